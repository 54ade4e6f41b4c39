package district

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/localday"
)

// countingWriter counts what it is given.
type countingWriter struct{ samples, series int64 }

func (c *countingWriter) Write(_ context.Context, ss []prompb.TimeSeries) error {
	for _, s := range ss {
		c.samples += int64(len(s.Samples))
	}
	c.series += int64(len(ss))
	return nil
}
func (c *countingWriter) Flush(context.Context) error { return nil }

var benchUntil = localday.Day{Year: 2026, Month: time.October, Day: 31}

// BenchmarkSimulate90Days measures the generator alone on the demo's load:
// the district's last 90 days, history of the index registers included.
func BenchmarkSimulate90Days(b *testing.B) {
	reg, err := Generate(Options{Seed: 1, Until: benchUntil})
	require.NoError(b, err)
	for b.Loop() {
		w := &countingWriter{}
		_, err := Simulate(context.Background(), reg, Config{Model: ModelOptions{Seed: 1, Until: benchUntil}, Days: 90}, w)
		require.NoError(b, err)
		b.ReportMetric(float64(w.samples), "samples/op")
	}
}

// BenchmarkDeliverDay is one day of the whole district once the registers
// are caught up.
func BenchmarkDeliverDay(b *testing.B) {
	reg, err := Generate(Options{Seed: 1, Until: benchUntil})
	require.NoError(b, err)
	m, err := NewModel(reg, ModelOptions{Seed: 1, Until: benchUntil})
	require.NoError(b, err)
	d := benchUntil.AddDays(-1000)
	m.catchUp(d)
	n := 0
	for b.Loop() {
		out, err := m.Deliver(d)
		require.NoError(b, err)
		for _, s := range out {
			for _, ts := range s {
				n += len(ts.Samples)
			}
		}
		d = d.AddDays(1)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
}
