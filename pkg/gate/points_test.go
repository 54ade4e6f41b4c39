package gate_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Result.Points tells exports which point was hidden and how many RMPs
// contributed to each published one; the expected sizes are counted from
// the raw samples, not by the gate.
func TestResultPoints(t *testing.T) {
	d := gatetest.Build(t)
	g, _ := newGate(t, d, d.Now)
	pub := caller(registry.Public, nil)
	day := gatetest.MissingK01 // 10 of k01's 105 miss a reading: 95 < 101
	normal := gatetest.Day("2024-03-28")
	tests := []struct {
		name  string
		query string
		day   localday.Day
		want  map[string]int // labels → set size, 0 = hidden
	}{
		{"sum by cluster", `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`, day, map[string]int{
			`{cluster="k01"}`: 0,
			`{cluster="k02"}`: contributors(d, d.Clusters["k02"], day),
			`{cluster="k03"}`: contributors(d, d.Clusters["k03"], day),
		}},
		{"literal arithmetic keeps the set", `sum(linky_consumption_daily_wh{perimeter="confluence"}) / 1000`, normal, map[string]int{
			`{}`: contributors(d, d.All(), normal),
		}},
		{"a hidden operand hides the combination", `sum(linky_consumption_daily_wh{perimeter="confluence"}) - sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`, day, map[string]int{
			`{}`: 0,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := g.Exec(context.Background(), pub, gate.Request{Query: tc.query, Start: tc.day.End(), End: tc.day.End()})
			require.NoError(t, err)
			got := map[string]int{}
			for _, p := range res.Points {
				require.Equal(t, timestamp.FromTime(tc.day.End()), p.T)
				if p.Hidden {
					require.Zero(t, p.Set, "the size of a hidden set is never told")
				}
				got[p.Metric.String()] = p.Set
			}
			require.Equal(t, tc.want, got)
			published := 0
			for _, n := range tc.want {
				if n > 0 {
					published++
				}
			}
			require.Len(t, res.Value.(promql.Vector), published)
		})
	}
}

func contributors(d *gatetest.District, prms []string, day localday.Day) int {
	n := 0
	for _, p := range prms {
		if _, ok := d.Daily(catalogue.IndexConsumption, p, day); ok {
			n++
		}
	}
	return n
}

// Whole widens the consent check to the period of the whole publication:
// a slice after a late grant does not publish an RMP the whole query would
// not.
func TestRequestWholeWidensConsent(t *testing.T) {
	d := gatetest.Build(t)
	g, _ := newGate(t, d, d.Now)
	c := caller(registry.Consented, []registry.UseCase{registry.UC3})
	day := gatetest.Day("2024-04-01") // after LateGrant's consent
	q := `linky_consumption_daily_wh{perimeter="uc3-b1"}`
	has := func(res *gate.Result) bool {
		for _, s := range res.Value.(promql.Vector) {
			if s.Metric.Get(catalogue.LabelRMP) == d.LateGrant {
				return true
			}
		}
		return false
	}
	alone, err := g.Exec(context.Background(), c, gate.Request{Query: q, Start: day.End(), End: day.End()})
	require.NoError(t, err)
	require.True(t, has(alone))
	whole := [2]time.Time{gatetest.Day("2024-03-28").Start(), day.End()}
	sliced, err := g.Exec(context.Background(), c, gate.Request{Query: q, Start: day.End(), End: day.End(), Whole: whole})
	require.NoError(t, err)
	require.False(t, has(sliced))
	require.NotEmpty(t, sliced.Value.(promql.Vector))
}
