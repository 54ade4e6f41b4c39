package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// gateOverhead runs BenchmarkGateOverhead (pkg/gate) Reps times and returns
// gated/raw time per query of each count. It runs as `go test` rather than
// in-process so that the gate's test district stays out of the binary.
func (c *Config) gateOverhead(ctx context.Context) ([]float64, error) {
	c.logf("running BenchmarkGateOverhead -count %d", c.Reps)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkGateOverhead$",
		"-benchmem", "-count", strconv.Itoa(c.Reps), "./pkg/gate")
	cmd.Dir = c.ModuleDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench BenchmarkGateOverhead: %w\n%s", err, out)
	}
	if err := os.WriteFile(c.WorkDir+"/gate-bench.txt", out, 0o644); err != nil {
		return nil, fmt.Errorf("saving gate benchmark output: %w", err)
	}
	m := parseBench(out, "ns/op")
	gated, raw := m["BenchmarkGateOverhead/gated"], m["BenchmarkGateOverhead/raw"]
	if len(gated) == 0 || len(gated) != len(raw) {
		return nil, fmt.Errorf("BenchmarkGateOverhead printed %d gated and %d raw results:\n%s", len(gated), len(raw), out)
	}
	ratios := make([]float64, len(gated))
	for i := range gated {
		ratios[i] = gated[i] / raw[i]
	}
	return ratios, nil
}

// decodeLimit runs rwbench's decode micro-benchmark on one core over the
// very payloads sent: snappy and protobuf decoding is the least any
// remote-write 1.0 receiver must do per sample.
func (c *Config) decodeLimit(ctx context.Context) (map[string]float64, error) {
	c.logf("running rwbench's decode-only benchmark on one core")
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", `^BenchmarkDecode$/^(live|dplus1)$/^snappy\+unmarshal$`,
		"-cpu", "1", "-benchtime", "3x")
	cmd.Dir = c.RWBenchDir
	cmd.Env = os.Environ()
	for _, mode := range c.Modes {
		cmd.Env = append(cmd.Env, "RWBENCH_PAYLOAD_"+strings.ToUpper(mode)+"="+c.payload(mode))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("rwbench decode benchmark: %w\n%s", err, out)
	}
	m := parseBench(out, "samples/s")
	rates := map[string]float64{}
	for _, mode := range c.Modes {
		if v := m["BenchmarkDecode/"+mode+"/snappy+unmarshal"]; len(v) > 0 {
			rates[mode] = median(v)
		}
	}
	return rates, nil
}

// parseBench reads `go test -bench` output and returns, by benchmark name
// without its -GOMAXPROCS suffix, the values of unit in the order printed.
func parseBench(out []byte, unit string) map[string][]float64 {
	m := map[string][]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		// After the name and the iteration count come value-unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			if f[i+1] != unit {
				continue
			}
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[name] = append(m[name], v)
			}
		}
	}
	return m
}
