package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// shapeBodies encodes meters × days of Linky readings as remote-write 1.0
// bodies of at most batch samples, in the shape's order, as the
// in-process benchmarks' payload (metergate bench feeds rwbench's instead):
//
//   - live: every half-hour step, every meter's point, in time order; the
//     daily index at midnight;
//   - dplus1: day after day, each meter's whole day (48 points and the
//     index) in one series, as concentrators deliver at D+1.
//
// Values are cheap functions of (meter, step), not a consumption model:
// these benchmarks measure decoding and storage, which do not care.
func shapeBodies(tb testing.TB, shape string, meters, days, batch int) (bodies [][]byte, samples int) {
	tb.Helper()
	const step = 30 * time.Minute
	start := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -days)
	curve := make([][]prompb.Label, meters)
	index := make([][]prompb.Label, meters)
	for m := range meters {
		conc := m*rwbenchConcentrators/meters + 1
		common := []prompb.Label{{Name: "cluster", Value: fmt.Sprintf("k%02d", (conc-1)%rwbenchClusters+1)},
			{Name: "concentrator", Value: fmt.Sprintf("c%02d", conc)}, {Name: "rmp", Value: RWBenchPRM(m)},
			{Name: "usage", Value: "residential"}}
		curve[m] = append([]prompb.Label{{Name: "__name__", Value: "linky_load_curve_watts"}}, common...)
		index[m] = append([]prompb.Label{{Name: "__name__", Value: "linky_index_wh"}}, common...)
	}
	watts := func(m int, t time.Time) float64 { return float64(300 + (m*7919+int(t.Unix()/1800)*31)%4700) }
	indexAt := func(m int, d int) float64 { return float64(1_000_000 + m*13 + d*15_000) }

	var wr prompb.WriteRequest
	n := 0
	flush := func() {
		raw, err := wr.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		bodies = append(bodies, snappy.Encode(nil, raw))
		wr.Timeseries, n = nil, 0
	}
	add := func(ts ...prompb.TimeSeries) {
		k := 0
		for _, t := range ts {
			k += len(t.Samples)
		}
		if n > 0 && n+k > batch {
			flush()
		}
		wr.Timeseries = append(wr.Timeseries, ts...)
		n += k
		samples += k
	}
	perDay := int(24 * time.Hour / step)
	switch shape {
	case "live":
		for d := range days {
			for s := 1; s <= perDay; s++ {
				t := start.AddDate(0, 0, d).Add(time.Duration(s) * step)
				for m := range meters {
					add(prompb.TimeSeries{Labels: curve[m], Samples: []prompb.Sample{{Timestamp: t.UnixMilli(), Value: watts(m, t)}}})
				}
				if s == perDay {
					for m := range meters {
						add(prompb.TimeSeries{Labels: index[m], Samples: []prompb.Sample{{Timestamp: t.UnixMilli(), Value: indexAt(m, d)}}})
					}
				}
			}
		}
	case "dplus1":
		for d := range days {
			day := start.AddDate(0, 0, d)
			for m := range meters {
				c := prompb.TimeSeries{Labels: curve[m]}
				for s := 1; s <= perDay; s++ {
					t := day.Add(time.Duration(s) * step)
					c.Samples = append(c.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: watts(m, t)})
				}
				end := day.AddDate(0, 0, 1).UnixMilli()
				add(c, prompb.TimeSeries{Labels: index[m], Samples: []prompb.Sample{{Timestamp: end, Value: indexAt(m, d)}}})
			}
		}
	default:
		tb.Fatalf("unknown shape %q", shape)
	}
	if n > 0 {
		flush()
	}
	return bodies, samples
}
