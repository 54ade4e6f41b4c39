package gate_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// withPerimeters is the test district with its perimeters replaced, and
// the partition check's verdict on them.
func withPerimeters(t *testing.T, d *gatetest.District, ps []registry.Perimeter) (*gatetest.District, error) {
	t.Helper()
	out := *d
	out.Registry = d.WithPerimeters(t, ps)
	return &out, gate.CheckPartition(out.Registry)
}

// A quartile-only perimeter that leaves 20 meters of a quartile perimeter
// out would let Q(k02) against Q(west ∪ …) place those 20 meters' values:
// the registry is refused, on the quartile partition.
func TestQuartileOnlyPerimeterNeedsQuartileCells(t *testing.T) {
	d := gatetest.Build(t)
	ps := append(gatetest.Perimeters(), registry.Perimeter{
		Name: "west", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
		Select: registry.Selector{PRMs: d.West()}, Forms: []string{"quartile"},
	})
	_, err := withPerimeters(t, d, ps)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "(consumption, quartile)")
	assert.Contains(t, err.Error(), "holds 20 RMPs, fewer than 101")
	assert.NotContains(t, err.Error(), "(consumption, sum)", "west publishes no sum: the sum partition is unchanged")

	// The same perimeter publishing sums too is refused on both.
	ps[len(ps)-1].Forms = nil
	_, err = withPerimeters(t, d, ps)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "(consumption, sum)")
}

// With the whole-cluster perimeters narrowed to sums, the quartile-only
// perimeter is accepted: sums over the clusters and quartiles over the
// west are published, and neither can be had in the other form.
func TestFormsOfAPerimeter(t *testing.T) {
	d := gatetest.Build(t)
	w := d.West()
	d2, err := withPerimeters(t, d, d.FormsPerimeters())
	require.NoError(t, err)
	g, _ := newGate(t, d2, d2.Now)
	pub := caller(registry.Public, nil)
	day := d.Days[0]
	for _, tc := range []struct {
		query   string
		refused bool
		want    float64
	}{
		{query: `quantile(0.5, linky_consumption_daily_wh{perimeter="west"})`, want: quartile(d, w, day, 0.5)},
		{query: `quantile(0.25, linky_consumption_daily_wh{perimeter="west"})`, want: quartile(d, w, day, 0.25)},
		{query: `sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`, want: sum(d, d.Clusters["k01"], day)},
		{query: `sum(linky_consumption_daily_wh{perimeter="west"})`, refused: true},
		{query: `sum(linky_consumption_daily_wh{perimeter="west"}) - sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`, refused: true},
		{query: `quantile(0.5, linky_consumption_daily_wh{perimeter="cluster-k01"})`, refused: true},
		{query: `quantile by (cluster) (0.5, linky_consumption_daily_wh{perimeter="confluence"})`, refused: true},
		{query: `quantile(0.5, linky_consumption_daily_wh{perimeter="confluence"})`, refused: true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			v, err := g.Query(context.Background(), pub, tc.query, day.End())
			if tc.refused {
				require.ErrorIs(t, err, gate.ErrRefused)
				assert.Equal(t, "query refused by the privacy policy", err.Error(), "one constant refusal")
				return
			}
			require.NoError(t, err)
			got := asMap(t, v)
			require.Len(t, got, 1)
			for _, x := range got {
				assert.InDelta(t, tc.want, x, 1e-6)
				assert.NotZero(t, x)
			}
		})
	}
}

// At query time the quartile cells count contributing RMPs: the day the
// first ten meters of k01 send nothing, building b1 (the first 12) has two
// contributors, a cell of the restricted audience's quartile partition
// inside the west; the west's quartile is hidden from the restricted
// audience and still shown to the public, whose partition has no b1.
func TestQuartileCellsCountContributors(t *testing.T) {
	d := gatetest.Build(t)
	d2, err := withPerimeters(t, d, d.FormsPerimeters())
	require.NoError(t, err)
	g, _ := newGate(t, d2, d2.Now)
	q := `quantile(0.5, linky_consumption_daily_wh{perimeter="west"})`
	day := gatetest.MissingK01 // its closing reading is missing for the ten
	for _, tc := range []struct {
		audience registry.Audience
		shown    bool
	}{{registry.Public, true}, {registry.Restricted, false}} {
		r, err := g.Exec(context.Background(), caller(tc.audience, []registry.UseCase{registry.UC2, registry.UC4}), gate.Request{
			Query: q, Start: day.End(), End: day.End(),
		})
		require.NoError(t, err, tc.audience)
		if tc.shown {
			assert.Zero(t, r.Suppressed, tc.audience)
			assert.Equal(t, 1, rowsOf(t, r), tc.audience)
		} else {
			assert.Equal(t, 1, r.Suppressed, tc.audience)
			assert.Zero(t, rowsOf(t, r), tc.audience)
		}
	}
}

func quartile(d *gatetest.District, prms []string, day localday.Day, q float64) float64 {
	v, _ := d.Expected(catalogue.IndexConsumption, prms, day, q)
	return v
}

func sum(d *gatetest.District, prms []string, day localday.Day) float64 {
	v, _ := d.Expected(catalogue.IndexConsumption, prms, day, -1)
	return v
}

// rowsOf counts the published points of an instant result.
func rowsOf(t *testing.T, r *gate.Result) int {
	n := 0
	for _, p := range r.Points {
		if !p.Hidden {
			n++
		}
	}
	return n
}
