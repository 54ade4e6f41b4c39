//go:build exportbench

package export_test

// The export benchmark (docs/exports.md): a simulated year of the whole
// district in one TSDB and in VictoriaMetrics, then metergate's gated
// export of a year of daily data (every public perimeter) and of a month of
// 30-minute curves (every consenting RMP), next to VictoriaMetrics'
// /api/v1/export/csv of the raw samples behind them. Run:
//
//	go test -tags exportbench -run TestExportBenchmark -v -timeout 30m ./remote/export

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

const vmBinary = "/usr/bin/victoria-metrics"

// tee writes the simulation into the TSDB and to VictoriaMetrics. Curves
// are kept for the last month only (the curve export covers a month).
type tee struct {
	db         *tsdb.DB
	vm         *sender.Sender
	curvesFrom int64
	samples    atomic.Int64
}

func (w *tee) Write(ctx context.Context, series []prompb.TimeSeries) error {
	var keep []prompb.TimeSeries
	app := w.db.Appender(ctx)
	for _, s := range series {
		b := labels.NewScratchBuilder(len(s.Labels))
		name := ""
		for _, l := range s.Labels {
			b.Add(l.Name, l.Value)
			if l.Name == labels.MetricName {
				name = l.Value
			}
		}
		m, ok := catalogue.Lookup(name)
		if !ok || m.Subject != catalogue.Meter {
			continue
		}
		var samples []prompb.Sample
		for _, x := range s.Samples {
			if m.Nature == catalogue.Curve && x.Timestamp < w.curvesFrom {
				continue
			}
			samples = append(samples, x)
		}
		if len(samples) == 0 {
			continue
		}
		b.Sort()
		ls := b.Labels()
		var ref storage.SeriesRef
		for _, x := range samples {
			r, err := app.Append(ref, ls, x.Timestamp, x.Value)
			if err != nil {
				return fmt.Errorf("appending %s: %w", ls, err)
			}
			ref = r
		}
		w.samples.Add(int64(len(samples)))
		keep = append(keep, prompb.TimeSeries{Labels: s.Labels, Samples: samples})
	}
	if err := app.Commit(); err != nil {
		return err
	}
	return w.vm.Write(ctx, keep)
}

func (w *tee) Flush(ctx context.Context) error { return w.vm.Flush(ctx) }

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// procKB reads VmHWM (peak) or VmRSS of a process; resetPeak starts a
// new peak (writing 5 to clear_refs, Linux ≥ 4.0).
func procKB(t *testing.T, pid, field string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return n * 1024
		}
	}
	t.Fatalf("no %s for %s", field, pid)
	return 0
}

func resetPeak(pid string) { _ = os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0) }

// heapPeak samples the Go heap while f runs.
func heapPeak(f func()) uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak.Load()
}

type measure struct {
	name    string
	rows    int64
	bytes   int64
	elapsed time.Duration
	peak    int64 // bytes
	growth  int64 // peak over the resident size before the export
	what    string
}

// fetch streams a GET and counts its lines without keeping them.
func fetch(t *testing.T, u, token string) (rows, n int64, elapsed time.Duration) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s %s", u, resp.Status, b)
	}
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	for {
		line, err := r.ReadSlice('\n')
		n += int64(len(line))
		if len(line) > 0 {
			rows++
		}
		if err == io.EOF {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		require.NoError(t, err)
	}
	return rows, n, time.Since(start)
}

func TestExportBenchmark(t *testing.T) {
	if _, err := os.Stat(vmBinary); err != nil {
		t.Skip("VictoriaMetrics is not installed")
	}
	ctx := context.Background()
	until := localday.Day{Year: 2026, Month: time.October, Day: 31}
	days := 365
	if s := os.Getenv("EXPORTBENCH_DAYS"); s != "" {
		days, _ = strconv.Atoi(s)
	}
	first := until.AddDays(-days + 1)
	monthFrom := until.AddDays(-30)

	// VictoriaMetrics.
	dir := t.TempDir()
	port := freePort(t)
	vmURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	vm := exec.Command(vmBinary, "-storageDataPath="+filepath.Join(dir, "vm"), fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
		"-retentionPeriod=100y", "-loggerLevel=ERROR")
	vm.Stdout, vm.Stderr = os.Stderr, os.Stderr
	require.NoError(t, vm.Start())
	t.Cleanup(func() { _ = vm.Process.Kill(); _, _ = vm.Process.Wait() })
	for i := 0; ; i++ {
		if resp, err := http.Get(vmURL + "/health"); err == nil {
			resp.Body.Close()
			break
		}
		require.Less(t, i, 200, "VictoriaMetrics did not start")
		time.Sleep(50 * time.Millisecond)
	}
	vmPID := strconv.Itoa(vm.Process.Pid)

	// One simulated year into both.
	reg, err := district.Generate(district.Options{Seed: 1, Until: until})
	require.NoError(t, err)
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	opts.OutOfOrderTimeWindow = int64(2 * 365 * 24 * time.Hour / time.Millisecond)
	db, err := tsdb.Open(filepath.Join(dir, "tsdb"), nil, nil, opts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	// No background compaction while loading: it would race the OOO head
	// the loader writes into; the head is compacted once, below.
	db.DisableCompactions()
	vs, err := sender.New(sender.Config{URL: vmURL + "/api/v1/write", Shards: 4})
	require.NoError(t, err)
	w := &tee{db: db, vm: vs, curvesFrom: monthFrom.Start().UnixMilli()}
	start := time.Now()
	_, err = district.Simulate(ctx, reg, district.Config{Model: district.ModelOptions{Seed: 1, Until: until}, Days: days}, w)
	require.NoError(t, err)
	require.NoError(t, vs.Close(ctx))
	require.Zero(t, vs.Stats().SamplesDropped)
	t.Logf("loaded %d samples of %d meters, %d days, in %s", w.samples.Load(), len(reg.Meters), days, time.Since(start).Round(time.Second))
	// Compact the loaded head now, so that the exports are measured on a
	// settled TSDB, not racing a year's compaction for the CPU.
	start = time.Now()
	db.EnableCompactions()
	require.NoError(t, db.Compact(ctx))
	t.Logf("compacted in %s: %d blocks", time.Since(start).Round(time.Second), len(db.Blocks()))
	// VictoriaMetrics makes new data searchable within seconds.
	resp, err := http.Get(vmURL + "/internal/force_flush")
	if err == nil {
		resp.Body.Close()
	}
	time.Sleep(3 * time.Second)

	srv := st.Start(t, st.Options{
		Registry: reg,
		Server:   server.Options{Store: districtStore{&store.Embedded{DB: db}}, Now: func() time.Time { return until.AddDays(2).Start().Add(time.Hour) }},
	})
	t.Logf("server started over the loaded TSDB")
	if os.Getenv("EXPORTBENCH_PROFILE") != "" {
		f, err := os.Create(os.Getenv("EXPORTBENCH_PROFILE"))
		require.NoError(t, err)
		require.NoError(t, pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	self := strconv.Itoa(os.Getpid())
	var results []measure
	run := func(name, what, u, token, pid string) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapBefore := ms.HeapInuse
		resetPeak(pid)
		before := procKB(t, pid, "VmRSS")
		var rows, n int64
		var el time.Duration
		hp := heapPeak(func() { rows, n, el = fetch(t, u, token) })
		peak := procKB(t, pid, "VmHWM")
		m := measure{name: name, what: what, rows: rows - 1, bytes: n, elapsed: el, peak: peak, growth: peak - before}
		if pid == self {
			m.what += fmt.Sprintf(" (Go heap in use: %.0f MiB before, peak +%.0f MiB during)", float64(heapBefore)/(1<<20), float64(hp-min(hp, heapBefore))/(1<<20))
		}
		results = append(results, m)
		t.Logf("%s %s: %d rows in %s", name, what, m.rows, el.Round(time.Millisecond))
	}
	q := url.Values{"from": {first.String()}, "to": {until.String()}}
	run("metergate", "year of daily data, every public perimeter (uc4), gated", srv.URL+"/api/v1/exports/uc4.csv?"+q.Encode(), st.PublicToken, self)
	vq := url.Values{"match[]": {`{__name__=~"linky_index_wh|linky_injection_index_wh"}`}, "format": {"__name__,rmp,__timestamp__:rfc3339,__value__"},
		"start": {strconv.FormatInt(first.Start().Unix(), 10)}, "end": {strconv.FormatInt(until.End().Unix(), 10)}}
	run("VictoriaMetrics", "the raw daily index samples behind it", vmURL+"/api/v1/export/csv?"+vq.Encode(), "", vmPID)
	cq := url.Values{"from": {monthFrom.String()}, "to": {until.String()}, "nature": {"curve"}}
	run("metergate", "month of 30-minute curves, every consenting RMP (uc3), gated", srv.URL+"/api/v1/exports/uc3.csv?"+cq.Encode(), st.ConsentedToken, self)
	vq = url.Values{"match[]": {`{__name__="linky_load_curve_watts"}`}, "format": {"__name__,rmp,__timestamp__:rfc3339,__value__"},
		"start": {strconv.FormatInt(monthFrom.Start().Unix(), 10)}, "end": {strconv.FormatInt(until.End().Unix(), 10)}}
	run("VictoriaMetrics", "every raw curve sample of the month", vmURL+"/api/v1/export/csv?"+vq.Encode(), "", vmPID)

	var b strings.Builder
	fmt.Fprintf(&b, "\n| export | rows | MB | seconds | rows/s | peak RSS MiB | RSS growth MiB | what |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, m := range results {
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.2f | %.0f | %.0f | %.0f | %s |\n", m.name, m.rows, float64(m.bytes)/1e6, m.elapsed.Seconds(),
			float64(m.rows)/m.elapsed.Seconds(), float64(m.peak)/(1<<20), float64(m.growth)/(1<<20), m.what)
	}
	t.Log(b.String())
	for _, m := range results {
		require.Positive(t, m.rows, m.name)
	}
}
