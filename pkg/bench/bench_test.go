package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift the fields.
	line := []byte("4242 (a b) c) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 8 0 100 0 0\n")
	d, err := parseStat(line)
	require.NoError(t, err)
	require.Equal(t, 3250*time.Millisecond, d)

	self, err := CPUTime(os.Getpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, self, time.Duration(0))
}

func TestParseHWM(t *testing.T) {
	n, err := parseHWM([]byte("Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1 kB\n"))
	require.NoError(t, err)
	require.Equal(t, int64(2048<<10), n)
	_, err = parseHWM([]byte("Name:\tx\n"))
	require.Error(t, err)
}

func TestDirBytesSkips(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "cache"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "wal"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cache", "x"), make([]byte, 100), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wal", "0001"), make([]byte, 10), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "top"), make([]byte, 1), 0o644))
	n, err := DirBytes(dir, "cache")
	require.NoError(t, err)
	require.Equal(t, int64(11), n)
}

func TestParseBench(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkGateOverhead/gated-2         	     100	   1200000 ns/op	  5000 B/op	      60 allocs/op
BenchmarkGateOverhead/raw-2           	     100	   1000000 ns/op
BenchmarkDecode/dplus1/snappy+unmarshal 	       3	  50000000 ns/op	 7300000 samples/s
PASS
`)
	require.Equal(t, []float64{1.2e6}, parseBench(out, "ns/op")["BenchmarkGateOverhead/gated"])
	require.Equal(t, []float64{1e6}, parseBench(out, "ns/op")["BenchmarkGateOverhead/raw"])
	require.Equal(t, []float64{7.3e6}, parseBench(out, "samples/s")["BenchmarkDecode/dplus1/snappy+unmarshal"])
}

func TestRatiosPairRepetitions(t *testing.T) {
	rep := &Report{Results: []Result{
		{Rep: 1, Mode: "dplus1", Receiver: "prometheus", Samples: 100, SendS: 1},
		{Rep: 1, Mode: "dplus1", Receiver: "metergate(2h)", Samples: 100, SendS: 0.25},
		{Rep: 2, Mode: "dplus1", Receiver: "metergate(2h)", Samples: 100, SendS: 0.5},
		{Rep: 2, Mode: "dplus1", Receiver: "prometheus", Samples: 100, SendS: 1},
		{Rep: 3, Mode: "dplus1", Receiver: "metergate(2h)", Samples: 100, SendS: 0.5}, // no Prometheus run: no ratio
		{Rep: 1, Mode: "live", Receiver: "prometheus", Samples: 100, SendS: 10},
	}}
	got := rep.ratios("dplus1", "metergate(2h)", Prometheus, Result.SendRate)
	require.Equal(t, []float64{4, 2}, got)
	require.Equal(t, 3.0, median(got))
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))

	var b bytes.Buffer
	require.NoError(t, rep.WriteTable(&b, []string{"dplus1"}))
	require.Contains(t, b.String(), "2 / 3 / 4")
	require.True(t, strings.Contains(b.String(), "NOT VERIFIED"), "unverified runs are named")
}

// The generated registry and configuration must be what metergate serve
// accepts, and every rwbench meter must have a consent in force, or the
// load curves would be refused.
func TestBenchRegistryAndConfig(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeRegistry(filepath.Join(dir, "registry"), 300))
	reg, err := registry.Load(filepath.Join(dir, "registry"))
	require.NoError(t, err)
	require.Len(t, reg.Meters, 300)
	for m := range 300 {
		prm := RWBenchPRM(m)
		require.True(t, catalogue.ValidRMP(prm), prm)
		require.True(t, reg.CurveCollectable(prm, time.Now().AddDate(0, 0, -30)), prm)
	}
	require.NoError(t, writeConfig(filepath.Join(dir, "metergate.yml"), "0123456789abcdef0123456789abcdef"))
	cfg, err := config.Load(filepath.Join(dir, "metergate.yml"))
	require.NoError(t, err)
	c, ok := cfg.Identify("0123456789abcdef0123456789abcdef")
	require.True(t, ok)
	require.True(t, c.Write)
	require.Equal(t, registry.Operator, c.Audience)
}

// The in-process payload carries what it says, in the shape's order.
func TestShapeBodies(t *testing.T) {
	for _, shape := range []string{"live", "dplus1"} {
		bodies, samples := shapeBodies(t, shape, 10, 2, 100)
		require.Equal(t, 10*2*49, samples, shape)
		require.NotEmpty(t, bodies)
	}
}
