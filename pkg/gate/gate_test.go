package gate_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

func newGate(t testing.TB, d *gatetest.District, now time.Time) (*gate.Gate, string) {
	path := filepath.Join(t.TempDir(), "audit.log")
	log, err := audit.Open(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { log.Close() })
	g, err := gate.New(gate.Options{
		Registry:  func() *registry.Registry { return d.Registry },
		Queryable: d.DB,
		Audit:     log,
		Now:       func() time.Time { return now },
	})
	require.NoError(t, err)
	return g, path
}

func caller(a registry.Audience, ucs []registry.UseCase) *config.Caller {
	return &config.Caller{Name: "test-" + string(a), Audience: a, UseCases: ucs}
}

func asMap(t *testing.T, v any) map[string]float64 {
	out := map[string]float64{}
	vec, ok := v.(promql.Vector)
	require.True(t, ok, "want a vector, got %T", v)
	for _, s := range vec {
		out[s.Metric.String()] = s.F
	}
	return out
}

func TestCases(t *testing.T) {
	d := gatetest.Build(t)
	require.NoError(t, gate.CheckPartition(d.Registry))
	g, path := newGate(t, d, d.Now)
	for _, c := range gatetest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			v, err := g.Query(context.Background(), caller(c.Audience, c.UseCases), c.Query, c.Day.End())
			if c.Refused {
				require.ErrorIs(t, err, gate.ErrRefused)
				assert.Equal(t, "query refused by the privacy policy", err.Error())
				return
			}
			require.NoError(t, err)
			want := c.Want(d)
			got := asMap(t, v)
			require.Len(t, got, len(want), "got %v", got)
			for k, w := range want {
				assert.InDelta(t, w, got[k], 1e-6, k)
				assert.NotZero(t, w, "a test figure of zero proves little")
			}
		})
	}
	n, err := audit.Verify(path)
	require.NoError(t, err)
	assert.Equal(t, len(gatetest.Cases), n, "one audit record per decision")
}

func TestSuppressionIsReported(t *testing.T) {
	d := gatetest.Build(t)
	g, _ := newGate(t, d, d.Now)
	r, err := g.Exec(context.Background(), caller(registry.Public, nil), gate.Request{
		Query: `sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`,
		Start: gatetest.MissingK01.End(), End: gatetest.MissingK01.End(),
	})
	require.NoError(t, err)
	assert.Equal(t, 1, r.Suppressed)
	warnings, _ := r.Annotations.AsStrings("", 0, 0)
	assert.Contains(t, warnings, gate.ErrSuppressed.Error())
}

// D+2 on the 23-hour day: at 10:00 on 2024-04-02 the last publishable day
// is 2024-03-31 (23 hours), stamped at 2024-04-01 00:00.
func TestDPlus2(t *testing.T) {
	d := gatetest.Build(t)
	q := `sum(linky_consumption_daily_wh{perimeter="confluence"})`
	pub := caller(registry.Public, nil)
	for _, tc := range []struct {
		now     time.Time
		day     localday.Day
		refused bool
	}{
		{time.Date(2024, 4, 2, 10, 0, 0, 0, localday.Paris), gatetest.Day("2024-03-31"), false},
		{time.Date(2024, 4, 2, 10, 0, 0, 0, localday.Paris), gatetest.Day("2024-04-01"), true},
		{time.Date(2024, 4, 1, 23, 59, 0, 0, localday.Paris), gatetest.Day("2024-03-31"), true},
		{time.Date(2024, 10, 29, 0, 0, 0, 0, localday.Paris), gatetest.Day("2024-10-27"), false}, // 25 hours
		{time.Date(2024, 10, 28, 23, 0, 0, 0, localday.Paris), gatetest.Day("2024-10-27"), true},
	} {
		g, _ := newGate(t, d, tc.now)
		_, err := g.Query(context.Background(), pub, q, tc.day.End())
		if tc.refused {
			assert.ErrorIs(t, err, gate.ErrRefused, "%s at %s", tc.day, tc.now)
		} else {
			assert.NoError(t, err, "%s at %s", tc.day, tc.now)
		}
	}
	// A range reaching past D+2 is cut at the limit, one point per local
	// midnight across the 23-hour day.
	now := time.Date(2024, 4, 2, 10, 0, 0, 0, localday.Paris)
	g, _ := newGate(t, d, now)
	v, err := g.QueryRange(context.Background(), pub, q, gatetest.Day("2024-03-29").Start(), now.Add(48*time.Hour), 24*time.Hour)
	require.NoError(t, err)
	m := v.(promql.Matrix)
	require.Len(t, m, 1)
	var days []string
	for _, p := range m[0].Floats {
		days = append(days, localday.Of(time.UnixMilli(p.T)).String())
		want, _ := d.Expected("linky_index_wh", d.All(), localday.Of(time.UnixMilli(p.T)).AddDays(-1), -1)
		assert.Equal(t, want, p.F)
	}
	assert.Equal(t, []string{"2024-03-29", "2024-04-01"}, days, "the days 03-29 and 03-30 of k01 are hidden; 04-01 00:00 closes the 23-hour day")
	// The consented path honours D+2 too.
	_, err = g.Query(context.Background(), caller(registry.Consented, []registry.UseCase{registry.UC3}),
		`linky_load_curve_watts{perimeter="uc3-b1"}`, now)
	assert.ErrorIs(t, err, gate.ErrRefused)
}

func TestConsentedCurves(t *testing.T) {
	d := gatetest.Build(t)
	g, _ := newGate(t, d, d.Now)
	day := gatetest.Day("2024-03-29")
	v, err := g.QueryRange(context.Background(), caller(registry.Consented, []registry.UseCase{registry.UC3}),
		`linky_load_curve_watts{perimeter="uc3-b1"}`, day.Start().Add(30*time.Minute), day.End(), 30*time.Minute)
	require.NoError(t, err)
	m := v.(promql.Matrix)
	var got []string
	for _, s := range m {
		got = append(got, s.Metric.Get("rmp"))
		assert.Len(t, s.Floats, 48)
	}
	assert.ElementsMatch(t, d.Consenting, got, "late grant (2024-03-31) and revoked consent excluded")
}

func TestCheckPartitionRefusesDifferencing(t *testing.T) {
	d := gatetest.Build(t)
	bad := *d.Registry
	k01 := d.Clusters["k01"]
	bad.Perimeters = append(gatetest.Perimeters(), registry.Perimeter{
		Name: "k01-minus-one", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
		Select: registry.Selector{PRMs: k01[1:]},
	})
	reg, err := registry.New(&bad)
	require.NoError(t, err)
	err = gate.CheckPartition(reg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "holds 1 RMPs, fewer than 101")
	assert.Contains(t, err.Error(), "cluster-k01")
}
