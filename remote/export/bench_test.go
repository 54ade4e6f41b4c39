package export_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/bench"
	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/export"
)

// benchDistrict is the simulated Confluence with days of daily index
// readings ending at until, in a TSDB, built once per process and size.
type benchDistrict struct {
	reg   *registry.Registry
	st    *store.Embedded // what the server's gate reads
	db    *tsdb.DB
	dir   string
	until localday.Day
}

var (
	benchMu        sync.Mutex
	benchDistricts = map[int]*benchDistrict{}
)

func loadBenchDistrict(b *testing.B, days int) *benchDistrict {
	benchMu.Lock()
	defer benchMu.Unlock()
	if d := benchDistricts[days]; d != nil {
		return d
	}
	until := localday.Day{Year: 2026, Month: time.October, Day: 31}
	reg, err := district.Generate(district.Options{Seed: 1, Until: until})
	require.NoError(b, err)
	dir, err := os.MkdirTemp("", "exportbench")
	require.NoError(b, err)
	// The server's storage (96 h head blocks compacted up to 36 days), with
	// an out-of-order window that takes a backfilled year.
	// BENCH_EXPORT_BLOCK sets another head block range (the blocks a read
	// touches are a large part of the export's cost).
	var block time.Duration
	if s := os.Getenv("BENCH_EXPORT_BLOCK"); s != "" {
		block, err = time.ParseDuration(s)
		require.NoError(b, err)
	}
	st, err := store.OpenEmbedded(filepath.Join(dir, "tsdb"), store.Options{
		Retention: 5 * 365 * 24 * time.Hour, OutOfOrderWindow: 2 * 365 * 24 * time.Hour, BlockDuration: block}, nil, nil)
	require.NoError(b, err)
	db := st.DB
	db.DisableCompactions()
	w := bench.NewDailyAppender(db)
	start := time.Now()
	_, err = district.Simulate(context.Background(), reg, district.Config{Model: district.ModelOptions{Seed: 1, Until: until}, Days: days}, w)
	require.NoError(b, err)
	db.EnableCompactions()
	require.NoError(b, db.Compact(context.Background()))
	b.Logf("loaded %d daily samples of %d meters, %d days, in %s; %d blocks", w.Samples(), len(reg.Meters), days, time.Since(start).Round(time.Second), len(db.Blocks()))
	d := &benchDistrict{reg: reg, st: st, db: db, dir: dir, until: until}
	benchDistricts[days] = d
	return d
}

// BenchmarkExport is the daily export of every public perimeter of uc4
// (the district, its clusters, the producers: sums, quartiles and set
// sizes) over days of the simulated district, through the gate and an
// fsync'd audit log, into io.Discard. BENCH_EXPORT_DAYS chooses the days
// (default 31 and 93, to see that memory does not grow with the range),
// BENCH_EXPORT_BLOCK the TSDB's head block range (default the server's).
//
//	go test -run '^$' -bench BenchmarkExport -benchtime 3x ./remote/export
func BenchmarkExport(b *testing.B) {
	// The districts are shared by the sizes' sub-benchmarks and their
	// repeated runs; they go when the whole benchmark is done.
	b.Cleanup(func() {
		benchMu.Lock()
		defer benchMu.Unlock()
		for days, d := range benchDistricts {
			_ = d.db.Close()
			_ = os.RemoveAll(d.dir)
			delete(benchDistricts, days)
		}
	})
	sizes := []int{31, 93}
	if s := os.Getenv("BENCH_EXPORT_DAYS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		sizes = []int{n}
	}
	for _, days := range sizes {
		// first: every export is the first of a fresh gate (a server
		// just started); repeat: one gate exports again and again, and
		// reads the sealed blocks it remembers (gate.SealedReadBytes).
		for _, fresh := range []bool{true, false} {
			name := fmt.Sprintf("days=%d/repeat", days)
			if fresh {
				name = fmt.Sprintf("days=%d/first", days)
			}
			b.Run(name, func(b *testing.B) { benchmarkExport(b, days, fresh) })
		}
	}
}

func benchmarkExport(b *testing.B, days int, fresh bool) {
	d := loadBenchDistrict(b, days)
	log, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"), nil)
	require.NoError(b, err)
	defer log.Close()
	reg := func() *registry.Registry { return d.reg }
	now := d.until.AddDays(2).Start().Add(time.Hour)
	var g *gate.Gate
	newExporter := func() *export.Exporter {
		g, err = gate.New(gate.Options{Registry: reg, Queryable: d.st, Audit: log, Now: func() time.Time { return now }})
		require.NoError(b, err)
		return &export.Exporter{Gate: g, Registry: reg}
	}
	e := newExporter()
	c := &config.Caller{Name: "opendata", Audience: registry.Public}
	spec, err := e.Check(c, export.Spec{UseCase: registry.UC4, Nature: catalogue.Daily, From: d.until.AddDays(1 - days), To: d.until})
	require.NoError(b, err)
	var rows int
	cw := &countingWriter{}
	runtime.GC()
	cw.sample()
	before := cw.peak
	cpu0 := cpuTime(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if fresh {
			e = newExporter()
		}
		n, err := e.Write(context.Background(), cw, c, spec, export.Format{})
		require.NoError(b, err)
		require.Positive(b, n)
		rows = n
	}
	b.StopTimer()
	// On a shared machine the process's CPU time says more than the
	// wall clock.
	b.ReportMetric((cpuTime(b)-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cw.peak-min(cw.peak, before))/(1<<20), "heap-growth-MiB")
	// What the gate keeps of sealed blocks, as it estimates it.
	b.ReportMetric(float64(g.SealedReads().Bytes)/(1<<20), "sealed-MiB")

	// The heap in use above counts garbage not yet collected (the sealed
	// readings of the fresh gates before, for one). One more export, not
	// timed, collects at every slice's flush: its growth is the memory
	// the export holds live, which must not grow with the range.
	if fresh {
		e = newExporter()
	}
	runtime.GC()
	live := &countingWriter{collect: true}
	live.sample()
	base := live.peak
	_, err = e.Write(context.Background(), live, c, spec, export.Format{})
	require.NoError(b, err)
	b.ReportMetric(float64(live.peak-min(live.peak, base))/(1<<20), "live-heap-growth-MiB")
}

// countingWriter discards what it is given, and samples the Go heap at
// every flush (the exporter flushes once per slice): the heap in use at the
// end of each slice, before the next is computed, is what must not grow
// with the range.
type countingWriter struct {
	n       int64
	peak    uint64
	collect bool // collect garbage before each sample: the live heap
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

func (w *countingWriter) Flush() error {
	w.sample()
	return nil
}

func (w *countingWriter) sample() {
	if w.collect {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.peak = max(w.peak, ms.HeapInuse)
}

var _ io.Writer = (*countingWriter)(nil)

// cpuTime is the user and system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
