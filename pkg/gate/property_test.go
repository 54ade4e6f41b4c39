package gate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
)

// Generated perimeters and queries: every published point is recomputed
// from the raw samples and has at least the threshold of contributors.
func TestPropertyPublishedPointsAreSafe(t *testing.T) {
	d := gatetest.Build(t)
	rng := rand.New(rand.NewPCG(3, 7))
	all := d.All()
	published := 0
	for round := range 12 {
		// A random public perimeter: a random subset of the district.
		n := 20 + rng.IntN(len(all)-20)
		perm := rng.Perm(len(all))
		var prms []string
		for _, i := range perm[:n] {
			prms = append(prms, all[i])
		}
		r := *d.Registry
		r.Perimeters = []registry.Perimeter{{Name: "gen", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
			Select: registry.Selector{PRMs: prms}}}
		reg, err := registry.New(&r)
		require.NoError(t, err)
		registered := gate.CheckPartition(reg) == nil
		g, err := gate.New(gate.Options{Registry: func() *registry.Registry { return reg }, Queryable: d.DB, Now: func() time.Time { return d.Now }})
		require.NoError(t, err)
		for _, day := range d.Days {
			q := 0.25 * float64(1+rng.IntN(3))
			sumQ := rng.IntN(2) == 0
			query := fmt.Sprintf(`quantile(%v, linky_consumption_daily_wh{perimeter="gen"})`, q)
			if sumQ {
				query, q = `sum(linky_consumption_daily_wh{perimeter="gen"})`, -1
			}
			v, err := g.Query(context.Background(), &config.Caller{Name: "p", Audience: registry.Public}, query, day.End())
			require.NoError(t, err, "round %d %s", round, query)
			vec := v.(promql.Vector)
			want, contributors := d.Expected("linky_index_wh", prms, day, q)
			if len(vec) == 0 {
				continue
			}
			published++
			require.Len(t, vec, 1)
			assert.GreaterOrEqual(t, contributors, 101, "published with %d contributors", contributors)
			assert.True(t, registered || contributors >= 101)
			assert.InDelta(t, want, vec[0].F, 1e-6, "%s on %s", query, day)
		}
	}
	assert.Positive(t, published, "the property was exercised on published points")
}

// FuzzQuery: the gate never panics and never publishes a point whose set
// (any published point of the public audience) has fewer than 101
// contributors: on the district, every perimeter's cluster sets are large,
// so we check that no answer has more points than there are safe groups and
// no answer reveals a value of a single RMP.
func FuzzQuery(f *testing.F) {
	for _, c := range gatetest.Cases {
		f.Add(c.Query)
	}
	f.Add(`sum(linky_consumption_daily_wh{perimeter="confluence"}) - sum(linky_consumption_daily_wh{perimeter="confluence"})`)
	d := gatetest.Build(f)
	g, err := gate.New(gate.Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: d.DB, Now: func() time.Time { return d.Now }})
	require.NoError(f, err)
	day := gatetest.Day("2024-03-28")
	single := map[float64]bool{}
	for _, p := range d.All() {
		if v, ok := d.Daily("linky_index_wh", p, day); ok {
			single[v] = true
		}
	}
	pub := &config.Caller{Name: "fuzz", Audience: registry.Public}
	f.Fuzz(func(t *testing.T, q string) {
		v, err := g.Query(context.Background(), pub, q, day.End())
		if err != nil {
			if err != gate.ErrRefused {
				t.Fatalf("error other than the constant refusal: %v", err)
			}
			return
		}
		vec, ok := v.(promql.Vector)
		if !ok {
			t.Fatalf("public answer is %T", v)
		}
		for _, s := range vec {
			if s.Metric.Has("rmp") {
				t.Fatalf("output keeps rmp: %s", s.Metric)
			}
			// A bare individual value of the day is never published (sums
			// of ≥101 values of 4–13 kWh are far above any single one).
			if single[s.F] && !strings.Contains(q, "quantile") && !strings.ContainsAny(q, "+-*/") {
				t.Fatalf("%q published an individual value %v", q, s.F)
			}
		}
	})
}
