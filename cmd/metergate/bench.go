package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/metergate/metergate/pkg/bench"
	"github.com/metergate/metergate/pkg/store"
)

// benchCmd compares metergate's ingestion with Prometheus 2.42 and
// VictoriaMetrics 1.79.5 on this machine and prints one table of ratios
// (docs/performance.md). It starts every receiver itself, metergate
// included (this very binary, `metergate serve`).
func benchCmd(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	work := fs.String("work", filepath.Join(os.TempDir(), "metergate-bench"), "working directory: binaries, payloads, data directories, results")
	rwbenchDir := fs.String("rwbench", "../shared/tools/rwbench", "source directory of rwbench, built with `go build` at run time")
	src := fs.String("src", ".", "metergate's source tree, for BenchmarkGateOverhead (empty: skip the gate)")
	prom := fs.String("prometheus", "/usr/bin/prometheus", "Prometheus 2.42 binary")
	vm := fs.String("victoria-metrics", "/usr/bin/victoria-metrics", "VictoriaMetrics 1.79.5 binary")
	meters := fs.Int("meters", 7692, "meters (each a load-curve series and a daily index series)")
	days := fs.Int("days", 7, "days of data")
	batch := fs.Int("batch", 2000, "samples per request at most")
	senders := fs.Int("c", 4, "concurrent senders")
	lead := fs.Int("lead", 1, "epochs a sender may run ahead of the slowest (rwbench -lead)")
	reps := fs.Int("reps", 3, "repetitions of every run; the table gives min / median / max")
	modes := fs.String("modes", "live,dplus1", "shapes: live (every half hour, in time order) and dplus1 (whole days the next day); dashboard: the neighbourhood dashboard through the plugin against raw PromQL")
	dashboardDays := fs.Int("dashboard-days", 365, "days of the dashboard's time range (-modes dashboard)")
	receivers := fs.String("receivers", "prometheus,victoriametrics,metergate", "receivers to run")
	blocks := fs.String("block-durations", store.DefaultBlockDuration.String(), "metergate head block ranges to run, comma-separated (e.g. 2h,24h,96h)")
	idle := fs.Duration("idle", 2*time.Second, "a receiver below 4% of a core for this long has settled")
	decode := fs.Bool("decode", true, "run rwbench's decode-only benchmark for the decode-limit column")
	exportDays := fs.Int("export-days", 365, "days of daily data exported (-modes export)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// -modes export is a comparison of its own (bench_export.go), run after
	// the others.
	if rest, export := withoutExport(splitList(*modes)); export {
		if len(rest) == 0 {
			return runExportBench(ctx, *work, *vm, *exportDays, *reps)
		}
		*modes = strings.Join(rest, ",")
		defer func() {
			if err == nil {
				err = runExportBench(ctx, *work, *vm, *exportDays, *reps)
			}
		}()
	}
	// So is -modes dashboard (bench_dashboard.go).
	if rest, dashboard := splitDashboard(splitList(*modes)); dashboard {
		if len(rest) == 0 {
			return runDashboardBench(ctx, *work, *dashboardDays, *reps)
		}
		*modes = strings.Join(rest, ",")
		defer func() {
			if err == nil {
				err = runDashboardBench(ctx, *work, *dashboardDays, *reps)
			}
		}()
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the metergate binary: %w", err)
	}
	c := bench.Config{
		WorkDir: *work, PrometheusBin: *prom, VictoriaMetricsBin: *vm, MetergateBin: exe,
		Meters: *meters, Days: *days, Batch: *batch, Senders: *senders, Lead: *lead, Reps: *reps,
		Modes: splitList(*modes), Receivers: splitList(*receivers), Idle: *idle, Decode: *decode, Log: os.Stderr,
	}
	if c.RWBenchDir, err = filepath.Abs(*rwbenchDir); err != nil {
		return fmt.Errorf("-rwbench: %w", err)
	}
	if *src != "" {
		if c.ModuleDir, err = filepath.Abs(*src); err != nil {
			return fmt.Errorf("-src: %w", err)
		}
		if _, err := os.Stat(filepath.Join(c.ModuleDir, "pkg", "gate")); err != nil {
			return fmt.Errorf("-src %s is not metergate's source tree (run from the project root, or -src ''): %w", c.ModuleDir, err)
		}
	}
	for _, s := range splitList(*blocks) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("-block-durations: bad duration %q", s)
		}
		c.BlockDurations = append(c.BlockDurations, d)
	}
	if *reps < 1 || len(c.Modes) == 0 || len(c.Receivers) == 0 {
		return errors.New("-reps, -modes and -receivers must not be empty")
	}
	for _, m := range c.Modes {
		if m != "live" && m != "dplus1" {
			return fmt.Errorf("-modes: unknown shape %q", m)
		}
	}
	rep, err := bench.Run(ctx, c)
	if err != nil {
		return err
	}
	fmt.Printf("\n== metergate bench: %d meters x %d days, <=%d samples/request, %d senders, %d repetitions ==\n",
		*meters, *days, *batch, *senders, *reps)
	return rep.WriteTable(os.Stdout, c.Modes)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
