// Package bench compares metergate's remote-write ingestion with Prometheus
// and VictoriaMetrics on this machine, and measures the privacy gate's
// overhead, for `metergate bench` (see docs/performance.md).
//
// Every receiver gets the same pre-encoded request bodies, produced and sent
// by rwbench (../shared/tools/rwbench), built from its source at run time so
// that every receiver is fed by exactly the tool the reference figures came
// from. Each run starts a fresh receiver process on a free loopback port
// with a fresh data directory, sends, waits until the receiver is idle again
// (compactions, flushes), reads its CPU time and peak RSS from /proc,
// verifies every sample through /api/v1/query, stops it with SIGTERM and
// measures its data directory.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Config of a benchmark run.
type Config struct {
	// WorkDir holds binaries, payloads, receivers' data and results.
	WorkDir string
	// RWBenchDir is rwbench's source directory (a Go module).
	RWBenchDir string
	// ModuleDir is metergate's source tree, for the gate's Go benchmark;
	// empty skips it.
	ModuleDir string

	PrometheusBin, VictoriaMetricsBin, MetergateBin string

	Meters, Days, Batch, Senders, Lead int
	Reps                               int
	Modes                              []string // live, dplus1
	// Receivers to run; metergate runs once per BlockDurations entry.
	Receivers      []string
	BlockDurations []time.Duration
	// Idle is how long the receiver must stay below 4 % of a core to count
	// as settled after the send.
	Idle time.Duration
	// Decode runs rwbench's decode-only micro-benchmark on the payloads.
	Decode bool

	Log io.Writer

	metergateConfig string
	token           string
	rwbench         string
}

// Result is one (receiver, shape, repetition) run.
type Result struct {
	Rep         int     `json:"rep"`
	Mode        string  `json:"mode"`
	Receiver    string  `json:"receiver"`
	Samples     int64   `json:"samples_ok"`
	RequestsErr int     `json:"requests_err"`
	SendS       float64 `json:"send_s"`
	SettleS     float64 `json:"settle_s"`
	CPUS        float64 `json:"cpu_s"` // receiver CPU during the send and the settling
	PeakRSS     int64   `json:"peak_rss_bytes"`
	DiskBytes   int64   `json:"disk_bytes"` // data directory after a graceful stop
	// CompactedBytes is the data once everything is compacted into blocks
	// (see CompactedBytes); VictoriaMetrics's directory already is.
	CompactedBytes int64 `json:"compacted_bytes"`
	// OtherCores is the CPU other processes than the receiver and the
	// sender used during the send, in cores: the machine's noise.
	OtherCores float64 `json:"other_cores"`
	Verified   bool    `json:"verified"`
	Problem    string  `json:"problem,omitempty"`
}

// SendRate is samples per second while sending.
func (r Result) SendRate() float64 { return float64(r.Samples) / r.SendS }

// IngestRate is samples per second counting until the receiver is idle.
func (r Result) IngestRate() float64 { return float64(r.Samples) / (r.SendS + r.SettleS) }

// CPUPerSample is the receiver's CPU time per sample in microseconds.
func (r Result) CPUPerSample() float64 { return r.CPUS * 1e6 / float64(r.Samples) }

// DiskPerSample is on-disk bytes per sample as the receiver left them.
func (r Result) DiskPerSample() float64 { return float64(r.DiskBytes) / float64(r.Samples) }

// CompactedPerSample is on-disk bytes per sample once compacted.
func (r Result) CompactedPerSample() float64 { return float64(r.CompactedBytes) / float64(r.Samples) }

// Report is everything one benchmark run measured.
type Report struct {
	Results []Result
	// GateRatios are gated/raw times of BenchmarkGateOverhead, one per count.
	GateRatios []float64
	// DecodeRate is rwbench's decode-only limit (snappy + protobuf
	// unmarshal) in samples per second on one core, by shape.
	DecodeRate map[string]float64
	Samples    map[string]int64 // payload samples by shape
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "[%s] %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
	}
}

// receivers lists the runs of one shape, in the order of the first repetition.
func (c *Config) receivers() []Receiver {
	var rs []Receiver
	for _, k := range c.Receivers {
		if k != Metergate {
			rs = append(rs, Receiver{Kind: k})
			continue
		}
		for _, d := range c.BlockDurations {
			rs = append(rs, Receiver{Kind: Metergate, BlockDuration: d})
		}
	}
	return rs
}

// Run prepares rwbench, the payloads and metergate's configuration, runs
// every receiver on every shape Reps times, and the micro-benchmarks.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", c.WorkDir, err)
	}
	if err := c.prepare(ctx); err != nil {
		return nil, err
	}
	rep := &Report{DecodeRate: map[string]float64{}, Samples: map[string]int64{}}
	for _, mode := range c.Modes {
		n, err := c.encode(ctx, mode)
		if err != nil {
			return nil, err
		}
		rep.Samples[mode] = n
	}
	results := filepath.Join(c.WorkDir, "results.jsonl")
	out, err := os.Create(results)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", results, err)
	}
	defer out.Close()
	enc := json.NewEncoder(out)
	rs := c.receivers()
	for r := 1; r <= c.Reps; r++ {
		for _, mode := range c.Modes {
			// Alternate the order, so that no receiver always runs on a
			// machine warmed (page cache, CPU frequency) by the same other one.
			order := append([]Receiver(nil), rs...)
			if r%2 == 0 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			for _, recv := range order {
				res, err := c.runOne(ctx, recv, mode, r)
				if err != nil {
					return nil, err
				}
				rep.Results = append(rep.Results, res)
				if err := enc.Encode(res); err != nil {
					return nil, fmt.Errorf("writing %s: %w", results, err)
				}
			}
		}
	}
	c.logf("per-run results in %s", results)
	if c.ModuleDir != "" {
		if rep.GateRatios, err = c.gateOverhead(ctx); err != nil {
			return nil, err
		}
	}
	if c.Decode {
		if rep.DecodeRate, err = c.decodeLimit(ctx); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// prepare builds rwbench and writes metergate's configuration and a
// registry in which every rwbench meter has a consent in force.
func (c *Config) prepare(ctx context.Context) error {
	c.rwbench = filepath.Join(c.WorkDir, "bin", "rwbench")
	c.logf("building rwbench from %s", c.RWBenchDir)
	build := exec.CommandContext(ctx, "go", "build", "-o", c.rwbench, ".")
	build.Dir = c.RWBenchDir
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building rwbench in %s: %w\n%s", c.RWBenchDir, err, out)
	}
	if !wantsMetergate(c.Receivers) {
		return nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("making a token: %w", err)
	}
	c.token = hex.EncodeToString(b)
	dir := filepath.Join(c.WorkDir, "metergate")
	if err := writeRegistry(filepath.Join(dir, "registry"), c.Meters); err != nil {
		return err
	}
	c.metergateConfig = filepath.Join(dir, "metergate.yml")
	return writeConfig(c.metergateConfig, c.token)
}

func wantsMetergate(rs []string) bool {
	for _, r := range rs {
		if r == Metergate {
			return true
		}
	}
	return false
}

func (c *Config) payload(mode string) string {
	return filepath.Join(c.WorkDir, "payloads", mode+".bin")
}

// encode has rwbench generate and pre-encode the bodies of one shape, so
// that encoding costs nothing during the timed phase and every receiver
// gets the same bytes.
func (c *Config) encode(ctx context.Context, mode string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(c.payload(mode)), 0o755); err != nil {
		return 0, fmt.Errorf("creating payload directory: %w", err)
	}
	c.logf("pre-encoding the %s payload: %d meters x %d days", mode, c.Meters, c.Days)
	cmd := exec.CommandContext(ctx, c.rwbench, "-mode", mode, "-meters", strconv.Itoa(c.Meters), "-days", strconv.Itoa(c.Days),
		"-batch", strconv.Itoa(c.Batch), "-c", strconv.Itoa(c.Senders), "-write-payload", c.payload(mode),
		"-json", c.payload(mode)+".json")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("rwbench -write-payload (%s): %w\n%s", mode, err, out)
	}
	var res struct {
		Samples int64 `json:"samples"`
	}
	if err := readJSON(c.payload(mode)+".json", &res); err != nil {
		return 0, err
	}
	return res.Samples, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	return nil
}

// runOne measures one receiver on one shape.
func (c *Config) runOne(ctx context.Context, r Receiver, mode string, rep int) (Result, error) {
	res := Result{Rep: rep, Mode: mode, Receiver: r.Label()}
	dir := filepath.Join(c.WorkDir, "runs", fmt.Sprintf("%s-%s-r%d", r.Label(), mode, rep))
	c.logf("run %d: %s, %s shape", rep, r.Label(), mode)
	p, err := c.start(ctx, r, mode, dir)
	if err != nil {
		return res, err
	}
	defer p.stop() // on error paths; a second stop is a no-op
	// Start-up work (WAL replay, cache loading) is not ingestion.
	time.Sleep(time.Second)
	cpu0, err := CPUTime(p.pid())
	if err != nil {
		return res, err
	}
	busy0, err := BusyCPU()
	if err != nil {
		return res, err
	}
	token := ""
	if r.Kind == Metergate {
		token = c.token
	}
	sendJSON := filepath.Join(dir, "send.json")
	send := exec.CommandContext(ctx, c.rwbench, "-payload", c.payload(mode), "-url", p.base+"/api/v1/write",
		"-lead", strconv.Itoa(c.Lead), "-json", sendJSON)
	send.Env = append(os.Environ(), "RWBENCH_BEARER="+token)
	sendLog, err := os.Create(filepath.Join(dir, "send.log"))
	if err != nil {
		return res, fmt.Errorf("creating send log: %w", err)
	}
	send.Stdout, send.Stderr = sendLog, sendLog
	sendErr := send.Run()
	sendLog.Close()
	sent := time.Now()
	busy1, err := BusyCPU()
	if err != nil {
		return res, err
	}
	cpuSent, err := CPUTime(p.pid())
	if err != nil {
		return res, err
	}
	// rwbench exits 2 when some requests failed; the run is then reported
	// with its failures rather than aborted.
	var ee *exec.ExitError
	if sendErr != nil && !(errors.As(sendErr, &ee) && ee.ExitCode() == 2) {
		return res, fmt.Errorf("rwbench send to %s: %w (see %s)", r.Label(), sendErr, sendLog.Name())
	}
	var sr struct {
		Send struct {
			SamplesOK   int64   `json:"samples_ok"`
			WallS       float64 `json:"wall_s"`
			RequestsErr int     `json:"requests_err"`
			SenderCPUS  float64 `json:"sender_cpu_s"`
		} `json:"send"`
	}
	if err := readJSON(sendJSON, &sr); err != nil {
		return res, err
	}
	res.Samples, res.SendS, res.RequestsErr = sr.Send.SamplesOK, sr.Send.WallS, sr.Send.RequestsErr
	// Between the two /proc/stat readings rwbench also loaded the payload
	// (a fraction of a second) before its timed phase; that counts as other.
	res.OtherCores = ((busy1 - busy0) - (cpuSent - cpu0)).Seconds() - sr.Send.SenderCPUS
	if res.SendS > 0 {
		res.OtherCores /= res.SendS
	}
	if r.Kind == VictoriaMetrics {
		// VictoriaMetrics buffers recent rows in memory for up to a
		// second; flushing makes them searchable and counts its work now.
		if err := httpGet(ctx, p.base+"/internal/force_flush"); err != nil {
			return res, fmt.Errorf("flushing VictoriaMetrics: %w", err)
		}
	}
	lastBusy, err := settle(ctx, p.pid(), sent, c.Idle)
	if err != nil {
		return res, err
	}
	res.SettleS = lastBusy.Sub(sent).Seconds()
	cpu1, err := CPUTime(p.pid())
	if err != nil {
		return res, err
	}
	res.CPUS = (cpu1 - cpu0).Seconds()
	// The peak before the verification queries, which are not ingestion.
	if res.PeakRSS, err = PeakRSS(p.pid()); err != nil {
		return res, err
	}
	verifyJSON := filepath.Join(dir, "verify.json")
	verify := exec.CommandContext(ctx, c.rwbench, "-payload", c.payload(mode), "-url", p.base+"/api/v1/write",
		"-verify-only", "-json", verifyJSON)
	verify.Env = send.Env
	if out, err := verify.CombinedOutput(); err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
		return res, fmt.Errorf("rwbench -verify-only on %s: %w\n%s", r.Label(), err, out)
	}
	var vr struct {
		Verify struct {
			OK     bool `json:"ok"`
			Checks []struct {
				Query string  `json:"query"`
				Want  float64 `json:"want"`
				Got   float64 `json:"got"`
				OK    bool    `json:"ok"`
				Err   string  `json:"err"`
			} `json:"checks"`
		} `json:"verify"`
	}
	if err := readJSON(verifyJSON, &vr); err != nil {
		return res, err
	}
	res.Verified = vr.Verify.OK && res.RequestsErr == 0
	for _, ch := range vr.Verify.Checks {
		if !ch.OK && res.Problem == "" {
			res.Problem = fmt.Sprintf("%s: got %.0f want %.0f %s", ch.Query, ch.Got, ch.Want, ch.Err)
		}
	}
	if res.RequestsErr > 0 && res.Problem == "" {
		res.Problem = fmt.Sprintf("%d requests failed (see %s)", res.RequestsErr, sendLog.Name())
	}
	if err := p.stop(); err != nil {
		return res, fmt.Errorf("stopping %s: %w", r.Label(), err)
	}
	if res.DiskBytes, err = DirBytes(p.data, p.skip...); err != nil {
		return res, err
	}
	switch r.Kind {
	case VictoriaMetrics:
		res.CompactedBytes = res.DiskBytes
	case Metergate, Prometheus:
		// Prometheus 2.42's directory is in the format the TSDB library
		// still reads, so both are compacted by the same code.
		bd := r.BlockDuration
		if r.Kind == Prometheus {
			bd = 2 * time.Hour
		}
		if res.CompactedBytes, err = CompactedBytes(ctx, p.data, bd); err != nil {
			return res, err
		}
	}
	status := "verified"
	if !res.Verified {
		status = "NOT VERIFIED: " + res.Problem
	}
	c.logf("  %d samples, send %.2fs (%.0f k/s), idle %.2fs later (%.0f k/s incl. settle), CPU %.2f µs/sample, peak RSS %.0f MB, disk %.1f MB (%.2f B/sample; compacted %.2f), other processes %.2f cores, %s",
		res.Samples, res.SendS, res.SendRate()/1e3, res.SettleS, res.IngestRate()/1e3, res.CPUPerSample(),
		float64(res.PeakRSS)/1e6, float64(res.DiskBytes)/1e6, res.DiskPerSample(), res.CompactedPerSample(), res.OtherCores, status)
	return res, nil
}

func httpGet(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// settle polls the receiver's CPU time every half second until it has used
// less than 4 % of a core for idle, and returns the end of its last busy
// half second: compactions and merges after the last response count as
// ingestion work. It gives up after five minutes.
func settle(ctx context.Context, pid int, since time.Time, idle time.Duration) (time.Time, error) {
	const poll = 500 * time.Millisecond
	lastBusy := since
	prev, err := CPUTime(pid)
	if err != nil {
		return lastBusy, err
	}
	var quiet time.Duration
	for limit := time.Now().Add(5 * time.Minute); time.Now().Before(limit) && quiet < idle; {
		select {
		case <-ctx.Done():
			return lastBusy, ctx.Err()
		case <-time.After(poll):
		}
		cur, err := CPUTime(pid)
		if err != nil {
			return lastBusy, err
		}
		if cur-prev <= poll/25 {
			quiet += poll
		} else {
			quiet, lastBusy = 0, time.Now()
		}
		prev = cur
	}
	return lastBusy, nil
}
