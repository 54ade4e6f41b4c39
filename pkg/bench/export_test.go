package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
)

// The export table pairs metergate and VictoriaMetrics of the same
// repetition and judges the target on the median ratio; a run whose
// repetitions disagree on their rows is refused.
func TestExportReport(t *testing.T) {
	rep := &ExportReport{Days: 365, Samples: 2805696, Results: []ExportResult{
		{Rep: 1, Who: Metergate, Rows: 33216, Seconds: 3, CPUS: 2.8, PeakRSS: 200 << 20},
		{Rep: 1, Who: VictoriaMetrics, Rows: 2805696, Seconds: 1.5, CPUS: 1.4, PeakRSS: 400 << 20},
		{Rep: 2, Who: VictoriaMetrics, Rows: 2805696, Seconds: 2, CPUS: 1.4, PeakRSS: 400 << 20},
		{Rep: 2, Who: Metergate, Rows: 33216, Seconds: 1, CPUS: 2.8, PeakRSS: 200 << 20},
		{Rep: 3, Who: Metergate, Rows: 33216, Seconds: 1.8, CPUS: 2.8, PeakRSS: 200 << 20},
		{Rep: 3, Who: VictoriaMetrics, Rows: 2805696, Seconds: 2, CPUS: 1.4, PeakRSS: 400 << 20},
	}}
	require.NoError(t, rep.check())
	require.Equal(t, []float64{2, 0.5, 0.9}, rep.ratios(func(x ExportResult) float64 { return x.Seconds }))
	var b bytes.Buffer
	require.NoError(t, rep.WriteTable(&b))
	out := b.String()
	require.Contains(t, out, "0.5 / 0.9 / 2")
	require.Regexp(t, `seconds per export of 365 days .*VM ≤1.0×\s+yes`, out, "the median, 0.9, meets it")
	require.Contains(t, out, "2 / 2 / 2", "CPU ratio")
	require.Regexp(t, `first export after a start \(repetition 1\)\s+2\s+VM ≤1.0×\s+NO`, out, "repetition 1 is judged on its own")

	rep.Results[3].Rows = 33215
	require.ErrorContains(t, rep.check(), "gave 33216 rows, then 33215")
	rep.Results[3].Rows = 33216
	rep.Days = 40000
	require.Error(t, rep.check(), "fewer rows than days")
}

// The export bench's server has a sender, a public reader and a scraper
// (the sealed-read counters), and takes a
// backfilled range; the tee keeps only the daily index registers.
func TestExportConfigAndTee(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metergate.yml")
	require.NoError(t, writeExportConfig(path, map[string]string{"sender": "s-0123456789abcdef", "reader": "r-0123456789abcdef", "scraper": "m-0123456789abcdef"}, 365, true))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	cfg, err := config.Parse(b)
	require.NoError(t, err)
	var reader *config.Caller
	for i := range cfg.Callers {
		if cfg.Callers[i].Audience == registry.Public {
			reader = &cfg.Callers[i]
		}
	}
	require.NotNil(t, reader)
	require.False(t, reader.Write)
	require.Contains(t, string(b), "out_of_order_window: 375d")

	tee := &dailyTee{}
	series := []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "linky_index_wh"}, {Name: "rmp", Value: "1"}}, Samples: []prompb.Sample{{}, {}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "linky_load_curve_watts"}, {Name: "rmp", Value: "1"}}, Samples: []prompb.Sample{{}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "linky_injection_index_wh"}, {Name: "rmp", Value: "2"}}, Samples: []prompb.Sample{{}}},
	}
	require.NoError(t, tee.Write(context.Background(), series))
	require.EqualValues(t, 3, tee.samples)
}
