package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/ingest"
)

// The hot paths of metergate, each with its allocations:
//
//	go test -run '^$' -bench . -benchtime 3x ./pkg/bench
//
// Decode is the floor (what any remote-write 1.0 receiver must do), Ingest
// is the whole write path minus HTTP (decode, catalogue and consent checks,
// TSDB append, WAL, then the compactions the data causes), Gate is one
// district figure through the privacy gate and the raw engine.

const (
	benchMeters = 1000
	benchDays   = 7
	benchBatch  = 2000
)

// BenchmarkDecode: snappy and protobuf decoding of remote-write 1.0 bodies.
func BenchmarkDecode(b *testing.B) {
	for _, shape := range []string{"live", "dplus1"} {
		b.Run(shape, func(b *testing.B) {
			bodies, samples := shapeBodies(b, shape, benchMeters, benchDays, benchBatch)
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				for _, body := range bodies {
					raw, err := snappy.Decode(buf[:cap(buf)], body)
					if err != nil {
						b.Fatal(err)
					}
					buf = raw
					var wr prompb.WriteRequest
					if err := wr.Unmarshal(raw); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(samples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkIngest sends a week of meters through metergate's remote-write
// handler into a fresh embedded TSDB per iteration, then compacts
// everything that has become compactable, so the compactions the shape
// causes count as what they are: ingestion work. It runs for each head
// block range, which is what decides how much of a D+1 delivery takes
// the out-of-order path.
func BenchmarkIngest(b *testing.B) {
	for _, shape := range []string{"live", "dplus1"} {
		for _, block := range []time.Duration{2 * time.Hour, 24 * time.Hour, 96 * time.Hour} {
			b.Run(fmt.Sprintf("%s/block=%s", shape, shortDuration(block)), func(b *testing.B) {
				bodies, samples := shapeBodies(b, shape, benchMeters, benchDays, benchBatch)
				b.ReportAllocs()
				for b.Loop() {
					ingestOnce(b, bodies, block)
				}
				b.ReportMetric(float64(samples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
			})
		}
	}
}

func ingestOnce(b *testing.B, bodies [][]byte, block time.Duration) {
	db, err := store.OpenEmbedded(b.TempDir(), store.Options{Retention: 5 * 365 * 24 * time.Hour,
		OutOfOrderWindow: 7 * 24 * time.Hour, BlockDuration: block}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	h := ingest.NewHandler(ingest.Options{Storage: db, CurveCollectable: func(string, time.Time) bool { return true }})
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
	if err := db.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGate is BenchmarkGateOverhead (pkg/gate) with allocations: one
// day's district sum through the gate, and the raw engine's equivalent.
func BenchmarkGate(b *testing.B) {
	d := gatetest.Build(b)
	day := gatetest.Day("2024-03-28")
	ctx := context.Background()
	g, err := gate.New(gate.Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: d.DB, Now: func() time.Time { return d.Now }})
	if err != nil {
		b.Fatal(err)
	}
	pub := &config.Caller{Name: "bench", Audience: registry.Public}
	b.Run("gated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.Query(ctx, pub, `sum(linky_consumption_daily_wh{perimeter="confluence"})`, day.End()); err != nil {
				b.Fatal(err)
			}
		}
	})
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q, err := engine.NewInstantQuery(ctx, d.DB, nil, `sum(linky_index_wh - linky_index_wh offset 24h)`, day.End())
			if err != nil {
				b.Fatal(err)
			}
			if r := q.Exec(ctx); r.Err != nil {
				b.Fatal(r.Err)
			}
			q.Close()
		}
	})
}
