package gate_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
)

// BenchmarkGateOverhead compares one day's district sum through the gate
// (derived daily energy, contributor counting, cells, dominance, audit off)
// with the raw engine computing the same figure from the index registers.
func BenchmarkGateOverhead(b *testing.B) {
	d := gatetest.Build(b)
	day := gatetest.Day("2024-03-28")
	ctx := context.Background()
	g, err := gate.New(gate.Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: d.DB, Now: func() time.Time { return d.Now }})
	require.NoError(b, err)
	pub := &config.Caller{Name: "bench", Audience: registry.Public}
	b.Run("gated", func(b *testing.B) {
		for b.Loop() {
			if _, err := g.Query(ctx, pub, `sum(linky_consumption_daily_wh{perimeter="confluence"})`, day.End()); err != nil {
				b.Fatal(err)
			}
		}
	})
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e8, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	raw := `sum(linky_index_wh - linky_index_wh offset 24h)`
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			q, err := engine.NewInstantQuery(ctx, d.DB, nil, raw, day.End())
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
