package main

import (
	"context"
	"fmt"
	"os"

	"github.com/metergate/metergate/pkg/bench"
)

// dashboardMode is the bench mode that refreshes the neighbourhood
// dashboard through the plugin and compares it with the raw PromQL of the
// same figures (pkg/bench/dashboard.go). It needs no peer: it simulates
// the district into an embedded TSDB and starts metergate in process.
const dashboardMode = "dashboard"

// splitDashboard takes the dashboard mode out of the modes given to the
// ingestion bench.
func splitDashboard(modes []string) (rest []string, dashboard bool) {
	for _, m := range modes {
		if m == dashboardMode {
			dashboard = true
			continue
		}
		rest = append(rest, m)
	}
	return rest, dashboard
}

func runDashboardBench(ctx context.Context, work string, days, reps int) error {
	if days < 1 || reps < 1 {
		return fmt.Errorf("-dashboard-days (%d) and -reps (%d) must be positive", days, reps)
	}
	rep, err := bench.RunDashboard(ctx, bench.DashboardConfig{WorkDir: work, Days: days, Reps: reps, Log: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Printf("\n== metergate bench -modes dashboard: %s, public audience, %d days of the district, %d repetitions ==\n",
		bench.DashboardFile, days, reps)
	return rep.WriteTable(os.Stdout)
}
