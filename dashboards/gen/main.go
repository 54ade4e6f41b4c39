// Command gen writes metergate's dashboards as JSON (go generate
// ./dashboards, or go run ./dashboards/gen from the repository root).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/metergate/metergate/dashboards"
)

func main() {
	dir := flag.String("dir", ".", "directory to write the JSON files into (go generate runs in dashboards/)")
	flag.Parse()
	if st, err := os.Stat(*dir + "/dashboards.go"); err != nil || st.IsDir() {
		// Run from the repository root: write next to the package.
		if _, err := os.Stat("dashboards/dashboards.go"); err == nil {
			*dir = "dashboards"
		}
	}
	if err := dashboards.Write(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
