// Package enginetest runs real engines (VictoriaMetrics single node,
// Prometheus) as child processes for integration tests. The binaries come
// from the distribution (apt-get install victoria-metrics prometheus);
// Debian's victoria-metrics package ships no cluster binaries (vminsert,
// vmselect, vmstorage), so the tests use the single node, which serves
// the same remote-write and export APIs without the tenant prefix.
package enginetest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Engine is a running engine.
type Engine struct {
	URL      string // base URL of its HTTP API
	WriteURL string // its remote-write endpoint
	ReadURL  string // the base of its Prometheus API
	Kind     string // enginestore kind
	Dir      string

	t     testing.TB
	bin   string
	args  []string
	ready string
	cmd   *exec.Cmd
}

// NeedBinary finds an engine's binary. CI installs them, so there a missing
// one fails the test; elsewhere it is skipped.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; CI installs it", name)
		}
		t.Skipf("%s is not installed (apt-get install prometheus victoria-metrics)", name)
	}
	return p
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// VictoriaMetrics starts victoria-metrics (single node) with a retention
// long enough for the test district's 2024 data.
func VictoriaMetrics(t testing.TB) *Engine {
	t.Helper()
	bin := NeedBinary(t, "victoria-metrics")
	dir := t.TempDir()
	addr := freeAddr(t)
	e := &Engine{URL: "http://" + addr, Kind: "victoriametrics", Dir: dir, t: t, bin: bin, ready: "/health",
		args: []string{"-storageDataPath=" + dir, "-httpListenAddr=" + addr, "-retentionPeriod=100y",
			"-search.latencyOffset=0s", "-loggerLevel=ERROR",
			// The gate's PromQL names a perimeter's members (docs/scaling.md).
			"-search.maxQueryLen=4194304"}}
	e.WriteURL = e.URL + "/api/v1/write"
	e.ReadURL = e.URL
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Prometheus starts Prometheus with the remote-write receiver and an
// out-of-order window wide enough for D+1 data (and the test district's
// 2024 data).
//
// Its head never compacts during a test (a block range of 1000 days):
// Prometheus 2.42's head garbage collection, which follows each head
// compaction, can drop a sample whose append races it while answering the
// write with 200 (prometheus/prometheus#8365, fixed upstream in #16333,
// #19272 and #19470). D+1 deliveries hit that window: one meter-day in
// 7,692 went missing in about one run of TestSimulatedDistrictOverEngines
// in three. These tests compare metergate's answers over an engine with
// the embedded TSDB's, not the engine's durability; docs/scaling.md tells
// operators which Prometheus to run.
func Prometheus(t testing.TB) *Engine {
	t.Helper()
	bin := NeedBinary(t, "prometheus")
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("storage:\n  tsdb:\n    out_of_order_time_window: 1000d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Engine{URL: "http://" + addr, Kind: "prometheus", Dir: dir, t: t, bin: bin, ready: "/-/ready",
		args: []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr, "--web.enable-remote-write-receiver",
			"--storage.tsdb.retention.time=100y", "--log.level=error",
			"--storage.tsdb.min-block-duration=1000d", "--storage.tsdb.max-block-duration=1000d"}}
	e.WriteURL = e.URL + "/api/v1/write"
	e.ReadURL = e.URL
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Start runs the engine (again, on the same directory and port) and waits
// until it is ready.
func (e *Engine) Start() {
	e.t.Helper()
	e.cmd = exec.Command(e.bin, e.args...)
	e.cmd.Stdout, e.cmd.Stderr = os.Stderr, os.Stderr
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("starting %s: %v", e.bin, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.URL + e.ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.Stop()
	e.t.Fatalf("%s not ready at %s", e.bin, e.URL)
}

// Stop shuts the engine down gracefully (SIGINT: both engines flush what
// they acknowledged) and waits for it.
func (e *Engine) Stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
	e.cmd = nil
}

// Flush makes what VictoriaMetrics acknowledged searchable at once (it
// otherwise buffers recent rows for up to a second). A no-op for
// Prometheus, whose head is searchable on commit.
func (e *Engine) Flush() error {
	if e.Kind != "victoriametrics" {
		return nil
	}
	resp, err := http.Get(e.URL + "/internal/force_flush")
	if err != nil {
		return fmt.Errorf("force_flush: %w", err)
	}
	resp.Body.Close()
	return nil
}
