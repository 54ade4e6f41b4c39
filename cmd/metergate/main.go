// Command metergate is the privacy-gated smart-meter data server and its tools.
//
//	metergate serve     run the server (remote-write in, gated PromQL out)
//	metergate simulate  simulate the Confluence district and send it over remote-write
//	metergate demo      serve + simulate the last 90 days, for a first look
//	metergate bench     ingestion compared with Prometheus and VictoriaMetrics
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

var commands = []command{
	{"serve", "run the server: remote-write ingestion, gated query API, rules", serveCmd},
	{"simulate", "simulate the Confluence district and send it over remote-write", simulateCmd},
	{"demo", "start a server on ./metergate-demo and fill it with 90 simulated days", demoCmd},
	{"import", "import Enedis history files (SGE HDM CSV, Data Connect JSON) over remote-write", importCmd},
	{"export", "fetch a use case's published data as CSV from a running server", exportCmd},
	{"audit", "audit verify [-file audit.log]: check the gate's hash-chained decision log", auditCmd},
	{"soak", "run a server under mixed load (writes, queries, exports) and report latencies, errors, memory", soakCmd},
	{"bench", "compare ingestion with Prometheus and VictoriaMetrics; print a table of ratios", benchCmd},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: metergate <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(os.Stderr, "\n'metergate <command> -h' lists a command's flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name == os.Args[1] {
			err := c.run(ctx, os.Args[2:])
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(0)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "metergate %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	usage()
	os.Exit(2)
}
