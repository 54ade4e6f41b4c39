// Command gpx_metergate is metergate's Grafana data-source plugin backend.
// Grafana starts it and talks to it over gRPC (hashicorp/go-plugin); it is
// never run by hand.
package main

import (
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	// Europe/Paris is embedded: the plugin reads no zoneinfo files, and
	// Windows and scratch containers have none.
	_ "time/tzdata"

	"github.com/metergate/metergate/backend/plugin"
)

func main() {
	if err := datasource.Manage(plugin.ID, plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("plugin stopped", "error", err.Error())
		panic(err)
	}
}
