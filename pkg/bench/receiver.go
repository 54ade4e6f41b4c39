package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Receiver kinds.
const (
	Prometheus      = "prometheus"
	VictoriaMetrics = "victoriametrics"
	Metergate       = "metergate"
)

// Receiver is one remote-write receiver under test.
type Receiver struct {
	Kind string
	// BlockDuration is metergate's head block range (-storage.block-duration).
	BlockDuration time.Duration
}

// Label names the receiver in results and tables.
func (r Receiver) Label() string {
	if r.Kind == Metergate {
		return fmt.Sprintf("metergate(%s)", shortDuration(r.BlockDuration))
	}
	return r.Kind
}

func shortDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return d.String()
}

// process is a receiver started by the benchmark; only it is ever stopped.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	base    string // http://127.0.0.1:port
	data    string // data directory, measured after the stop
	skip    []string
}

// start launches the receiver on a free loopback port with a fresh data
// directory under dir, and waits until it answers its readiness URL.
func (c *Config) start(ctx context.Context, r Receiver, mode, dir string) (*process, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("cleaning %s: %w", dir, err)
	}
	return c.launch(ctx, r, mode, dir)
}

// launch starts receiver r on the data already in dir (a restart).
func (c *Config) launch(ctx context.Context, r Receiver, mode, dir string) (*process, error) {
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", data, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := &process{base: "http://" + addr, data: data, done: make(chan struct{})}
	var args []string
	var ready string
	switch r.Kind {
	case Prometheus:
		// Prometheus refuses D+1 deliveries without an out-of-order window;
		// 30 days as in rwbench's compare.sh, so both tools measure the same.
		conf := "global:\n  scrape_interval: 1m\nscrape_configs: []\n"
		if mode == "dplus1" {
			conf += "storage:\n  tsdb:\n    out_of_order_time_window: 30d\n"
		}
		cf := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("writing Prometheus configuration: %w", err)
		}
		args = []string{c.PrometheusBin, "--config.file=" + cf, "--storage.tsdb.path=" + data,
			"--storage.tsdb.retention.time=100y", "--web.listen-address=" + addr, "--web.enable-remote-write-receiver"}
		ready = "/-/ready"
	case VictoriaMetrics:
		args = []string{c.VictoriaMetricsBin, "-storageDataPath=" + data, "-retentionPeriod=100y", "-httpListenAddr=" + addr}
		ready = "/health"
		// VictoriaMetrics writes its caches there on exit; they are not data.
		p.skip = []string{"cache"}
	case Metergate:
		args = []string{c.MetergateBin, "serve", "-config", c.metergateConfig, "-listen", addr, "-data-dir", data,
			"-storage.block-duration", r.BlockDuration.String(), "-log.level", "warn"}
		ready = "/-/ready"
	default:
		return nil, fmt.Errorf("unknown receiver %q", r.Kind)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "receiver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating receiver log: %w", err)
	}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// The audit log of metergate goes to the run's directory.
	p.cmd.Dir = dir
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", r.Label(), err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if err := p.waitReady(ctx, ready, time.Minute); err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("%s did not become ready (see %s): %w", r.Label(), logf.Name(), err)
	}
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) waitReady(ctx context.Context, path string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get(p.base + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("timed out")
}

// stop sends SIGTERM, so that each receiver shuts down cleanly (flushes,
// closes its head), and kills it if it has not exited after 60 s.
func (p *process) stop() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("did not stop within a minute after SIGTERM; killed")
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) && ee.Exited() {
		return fmt.Errorf("exit status %d after SIGTERM", ee.ExitCode())
	}
	return nil
}
