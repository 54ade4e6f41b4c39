package main

import (
	"context"
	"fmt"
	"os"

	"github.com/metergate/metergate/pkg/bench"
)

// exportMode is the bench mode that compares metergate's gated CSV export
// of a year of daily district data with VictoriaMetrics' raw CSV export of
// the samples behind it (pkg/bench/export.go). It starts both itself.
const exportMode = "export"

// withoutExport takes the export mode out of the modes given to the other
// benches.
func withoutExport(modes []string) (rest []string, export bool) {
	for _, m := range modes {
		if m == exportMode {
			export = true
			continue
		}
		rest = append(rest, m)
	}
	return rest, export
}

func runExportBench(ctx context.Context, work, vm string, days, reps int) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the metergate binary: %w", err)
	}
	rep, err := bench.RunExport(ctx, bench.ExportConfig{WorkDir: work, MetergateBin: exe, VictoriaMetricsBin: vm,
		Days: days, Reps: reps, Log: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Printf("\n== metergate bench -modes export: %d days of the district's daily data, uc4 as the public audience, %d repetitions ==\n", days, reps)
	return rep.WriteTable(os.Stdout)
}
