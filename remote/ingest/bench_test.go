package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	vmprompb "github.com/VictoriaMetrics/VictoriaMetrics/lib/prompb"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/store"
)

// BenchmarkIngest measures samples per second through the remote-write
// handler into the embedded TSDB, in the D+1 shape of Linky deliveries:
// each request carries whole days of meters (48 half-hour curve points and
// the daily index each). Every iteration delivers a new day to a new TSDB
// holding the previous days, as the head-end does each night.
// Compare with Prometheus and VictoriaMetrics through ../shared/tools/rwbench.
func BenchmarkIngest(b *testing.B) {
	for _, meters := range []int{1000, 7692} {
		b.Run(fmt.Sprintf("dplus1/meters=%d", meters), func(b *testing.B) {
			day := localday.Of(time.Now()).AddDays(-1)
			bodies, samples := dplus1Bodies(b, meters, day, 2000)
			b.ResetTimer()
			b.ReportAllocs()
			var total int
			var elapsed time.Duration
			for range b.N {
				b.StopTimer()
				db, err := store.OpenEmbedded(b.TempDir(), store.Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}, nil, nil)
				require.NoError(b, err)
				h := NewHandler(Options{Storage: db, CurveCollectable: func(string, time.Time) bool { return true }})
				b.StartTimer()
				began := time.Now()
				for _, body := range bodies {
					req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
					req.Header.Set("Content-Encoding", "snappy")
					req.Header.Set("Content-Type", "application/x-protobuf")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusNoContent {
						b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
					}
				}
				elapsed += time.Since(began)
				total += samples
				b.StopTimer()
				require.NoError(b, db.Close())
				b.StartTimer()
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "samples/s")
		})
	}
}

// dplus1Bodies encodes one day of meters as remote-write 1.0 bodies of at
// most batch samples, each meter's day in one series chunk.
func dplus1Bodies(b *testing.B, meters int, day localday.Day, batch int) ([][]byte, int) {
	var bodies [][]byte
	var wr prompb.WriteRequest
	n, total := 0, 0
	flush := func() {
		raw, err := wr.Marshal()
		require.NoError(b, err)
		bodies = append(bodies, snappy.Encode(nil, raw))
		wr.Timeseries, n = nil, 0
	}
	for m := range meters {
		common := []prompb.Label{{Name: "cluster", Value: fmt.Sprintf("k%02d", m%30+1)}, {Name: "concentrator", Value: fmt.Sprintf("c%02d", m%61+1)},
			{Name: "rmp", Value: fmt.Sprintf("%014d", 20000000000000+m)}, {Name: "usage", Value: "residential"}}
		curve := prompb.TimeSeries{Labels: append([]prompb.Label{{Name: "__name__", Value: "linky_load_curve_watts"}}, common...)}
		for ts := day.Start().Add(30 * time.Minute); !ts.After(day.End()); ts = ts.Add(30 * time.Minute) {
			curve.Samples = append(curve.Samples, prompb.Sample{Timestamp: ts.UnixMilli(), Value: float64(300 + (m*7+ts.Minute())%900)})
		}
		index := prompb.TimeSeries{Labels: append([]prompb.Label{{Name: "__name__", Value: "linky_index_wh"}}, common...),
			Samples: []prompb.Sample{{Timestamp: day.End().UnixMilli(), Value: float64(1_000_000 + m*13)}}}
		k := len(curve.Samples) + 1
		if n+k > batch {
			flush()
		}
		wr.Timeseries = append(wr.Timeseries, curve, index)
		n += k
		total += k
	}
	if n > 0 {
		flush()
	}
	return bodies, total
}

// BenchmarkDecodeV1 compares decoding live-shaped remote-write 1.0 bodies
// (one sample per series, 2,000 series per request) with the generated
// prompb.WriteRequest.Unmarshal, which Prometheus's handler uses and
// rwbench's decode-only floor measures, and with what v1Writer does:
// scanV1 (exemplars or histograms? the label fields as sent), then
// VictoriaMetrics' unmarshaler, then (cached) each series found in the
// validation cache by its label fields. Snappy is left out: all pay it alike.
func BenchmarkDecodeV1(b *testing.B) {
	const meters, steps = 2000, 48
	var raws [][]byte
	start := time.Now().Add(-24 * time.Hour).Truncate(30 * time.Minute)
	for s := range steps {
		var wr prompb.WriteRequest
		t := start.Add(time.Duration(s) * 30 * time.Minute).UnixMilli()
		for m := range meters {
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{{Name: "__name__", Value: "linky_load_curve_watts"}, {Name: "cluster", Value: fmt.Sprintf("k%02d", m%30+1)},
					{Name: "concentrator", Value: fmt.Sprintf("c%02d", m%61+1)}, {Name: "rmp", Value: fmt.Sprintf("%014d", 20000000000000+m)}, {Name: "usage", Value: "residential"}},
				Samples: []prompb.Sample{{Timestamp: t, Value: float64(300 + m%900)}}})
		}
		raw, err := wr.Marshal()
		require.NoError(b, err)
		raws = append(raws, raw)
	}
	samples := float64(meters * steps)
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, raw := range raws {
				var wr prompb.WriteRequest
				require.NoError(b, wr.Unmarshal(raw))
			}
		}
		b.ReportMetric(samples*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
	})
	for _, cached := range []bool{false, true} {
		name := "vm"
		c := newValidCache()
		if cached {
			name = "vm/cached"
			wru := vmprompb.GetWriteRequestUnmarshaler()
			wr, err := wru.UnmarshalProtobuf(raws[0])
			require.NoError(b, err)
			wires, generated := scanV1(raws[0], nil)
			require.False(b, generated)
			require.Len(b, wires, len(wr.Timeseries))
			for i, ts := range wr.Timeseries {
				var sb labels.ScratchBuilder
				for _, l := range ts.Labels {
					sb.Add(l.Name, l.Value)
				}
				sb.Sort()
				v, err := c.validate(sb.Labels())
				require.NoError(b, err)
				c.rememberWire(wires[i], v)
			}
			vmprompb.PutWriteRequestUnmarshaler(wru)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			var wires [][]byte
			for b.Loop() {
				for _, raw := range raws {
					var generated bool
					wires, generated = scanV1(raw, wires[:0])
					require.False(b, generated)
					wru := vmprompb.GetWriteRequestUnmarshaler()
					wr, err := wru.UnmarshalProtobuf(raw)
					require.NoError(b, err)
					for i, ts := range wr.Timeseries {
						if cached && (!within(ts.Labels[0].Name, wires[i]) || c.lookupWire(wires[i]) == nil) {
							b.Fatal("not in the cache")
						}
						n += len(ts.Samples)
					}
					vmprompb.PutWriteRequestUnmarshaler(wru)
				}
			}
			b.ReportMetric(samples*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
