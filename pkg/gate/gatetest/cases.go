package gatetest

import (
	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Case is one query of the policy table or of an attack, evaluated as an
// instant query at the local midnight closing Day.
type Case struct {
	Name     string
	Audience registry.Audience
	UseCases []registry.UseCase
	Query    string
	Day      localday.Day
	Refused  bool
	// Want is the expected answer, label set → value, recomputed from the
	// raw samples; an empty map means every point is hidden.
	Want func(d *District) map[string]float64
}

const (
	cons = catalogue.IndexConsumption
	inj  = catalogue.IndexInjection
)

func one(metric string, prms func(*District) []string, day localday.Day, q float64) func(*District) map[string]float64 {
	return func(d *District) map[string]float64 {
		v, _ := d.Expected(metric, prms(d), day, q)
		return map[string]float64{"{}": v}
	}
}

func all(d *District) []string       { return d.All() }
func k01(d *District) []string       { return d.Clusters["k01"] }
func building(d *District) []string  { return d.Building }
func producers(d *District) []string { return d.Producers }

func none(*District) map[string]float64 { return map[string]float64{} }

var (
	normal = Day("2024-03-28")
	short  = Day("2024-03-31") // 23 hours
	long   = Day("2024-10-27") // 25 hours
)

// Cases are the rows of POLICY.md and the attacks it lists.
var Cases = []Case{
	// Allowed forms, one per row, with numbers from raw samples.
	{Name: "public sum over the district", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})`, Want: one(cons, all, normal, -1)},
	{Name: "public sum on a 23-hour day", Audience: registry.Public, Day: short,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})`, Want: one(cons, all, short, -1)},
	{Name: "public sum on a 25-hour day", Audience: registry.Public, Day: long,
		Query: `sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`, Want: one(cons, k01, long, -1)},
	{Name: "public median rounded up to kWh", Audience: registry.Public, Day: normal,
		Query: `quantile(0.5, linky_consumption_daily_wh{perimeter="confluence"})`, Want: one(cons, all, normal, 0.5)},
	{Name: "public first quartile", Audience: registry.Public, Day: normal,
		Query: `quantile(0.25, linky_consumption_daily_wh{perimeter="cluster-k01"})`, Want: one(cons, k01, normal, 0.25)},
	{Name: "public sum by cluster", Audience: registry.Public, Day: normal,
		Query: `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		Want: func(d *District) map[string]float64 {
			out := map[string]float64{}
			for _, c := range []string{"k01", "k02", "k03"} {
				out[`{cluster="`+c+`"}`], _ = d.Expected(cons, d.Clusters[c], normal, -1)
			}
			return out
		}},
	{Name: "arithmetic between aggregates and literals", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"}) / 1000 - sum(linky_consumption_daily_wh{perimeter="cluster-k01"}) / 1000`,
		Want: func(d *District) map[string]float64 {
			a, _ := d.Expected(cons, d.All(), normal, -1)
			b, _ := d.Expected(cons, d.Clusters["k01"], normal, -1)
			return map[string]float64{"{}": a/1000 - b/1000}
		}},
	{Name: "restricted sum over a 12-household building", Audience: registry.Restricted, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="building-b1"})`, Want: one(cons, building, normal, -1)},
	{Name: "restricted Q3 over a 12-household building", Audience: registry.Restricted, Day: normal,
		Query: `quantile(0.75, linky_consumption_daily_wh{perimeter="building-b1"})`, Want: one(cons, building, normal, 0.75)},
	{Name: "public production sum over 15 producers", Audience: registry.Public, Day: normal,
		Query: `sum(linky_injection_daily_wh{perimeter="producers"})`, Want: one(inj, producers, normal, -1)},
	{Name: "public production median", Audience: registry.Public, Day: normal,
		Query: `quantile(0.5, linky_injection_daily_wh{perimeter="producers"})`, Want: one(inj, producers, normal, 0.5)},

	// Audiences.
	{Name: "public cannot address a restricted perimeter", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="building-b1"})`, Refused: true},
	{Name: "load curves need consent (public)", Audience: registry.Public, Day: normal,
		Query: `sum(linky_load_curve_watts{perimeter="confluence"})`, Refused: true},
	{Name: "load curves need consent (restricted)", Audience: registry.Restricted, Day: normal,
		Query: `quantile(0.5, linky_load_curve_watts{perimeter="building-b1"})`, Refused: true},
	{Name: "individual values need consent", Audience: registry.Restricted, Day: normal,
		Query: `linky_consumption_daily_wh{perimeter="building-b1"}`, Refused: true},

	// Extremes and order statistics.
	{Name: "min", Audience: registry.Public, Day: normal, Query: `min(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "max", Audience: registry.Public, Day: normal, Query: `max(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "topk", Audience: registry.Public, Day: normal, Query: `topk(1, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "bottomk", Audience: registry.Public, Day: normal, Query: `bottomk(1, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "limitk", Audience: registry.Public, Day: normal, Query: `limitk(1, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "quantile(0)", Audience: registry.Public, Day: normal, Query: `quantile(0, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "quantile(1)", Audience: registry.Public, Day: normal, Query: `quantile(1, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "quantile(0.99)", Audience: registry.Public, Day: normal, Query: `quantile(0.99, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "computed quantile", Audience: registry.Public, Day: normal, Query: `quantile(0.5+0.5, linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "count_values", Audience: registry.Public, Day: normal, Query: `count_values("v", linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "stddev", Audience: registry.Public, Day: normal, Query: `stddev(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "group", Audience: registry.Public, Day: normal, Query: `group(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "count", Audience: registry.Public, Day: normal, Query: `count(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "absent", Audience: registry.Public, Day: normal, Query: `absent(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},

	// Data-dependent membership.
	{Name: "value filter before aggregation", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} > 3000)`, Refused: true},
	{Name: "set operator before aggregation", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} unless linky_consumption_daily_wh{perimeter="cluster-k01"})`, Refused: true},
	{Name: "regex matcher on rmp", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence",rmp=~"2100000000000[0-9]"})`, Refused: true},
	{Name: "negative matcher on rmp", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence",rmp!="21000000000000"})`, Refused: true},
	{Name: "equality matcher on a meter label", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence",cluster="k01"})`, Refused: true},
	{Name: "regex perimeter", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter=~"confluence|cluster-k01"})`, Refused: true},
	{Name: "label_replace", Audience: registry.Public, Day: normal,
		Query: `sum(label_replace(linky_consumption_daily_wh{perimeter="confluence"}, "x", "$1", "rmp", "(.*)"))`, Refused: true},
	{Name: "join to metadata", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} * on(concentrator) group_left linky_concentrator_info)`, Refused: true},
	{Name: "info()", Audience: registry.Public, Day: normal,
		Query: `sum(info(linky_consumption_daily_wh{perimeter="confluence"}))`, Refused: true},
	{Name: "output keeping rmp", Audience: registry.Public, Day: normal,
		Query: `sum by (rmp) (linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "without keeps meter labels", Audience: registry.Public, Day: normal,
		Query: `sum without (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "group by a label the perimeter does not allow", Audience: registry.Public, Day: normal,
		Query: `sum by (concentrator) (linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
	{Name: "unregistered set (no perimeter)", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh)`, Refused: true},
	{Name: "unknown perimeter", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence-minus-one"})`, Refused: true},
	{Name: "raw index register", Audience: registry.Public, Day: normal,
		Query: `sum(linky_index_wh{perimeter="confluence"})`, Refused: true},
	{Name: "comparison after aggregation", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"}) > 0`, Refused: true},
	{Name: "vector matching modifiers", Audience: registry.Public, Day: normal,
		Query: `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"}) / on() group_left sum(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},

	// Counting contributors, not registered meters.
	{Name: "cluster with 95 of 105 contributing is hidden", Audience: registry.Public, Day: MissingK01,
		Query: `sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`, Want: none},
	{Name: "district sum hidden when a cell falls under 101 contributors", Audience: registry.Public, Day: MissingK01,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})`, Want: none},
	// For restricted callers k01 has 95 ≥ 11 contributors, but building b1
	// (inside k01) has 2 of 12 contributing: the cell b1 would be the
	// difference cluster-k01 − (k01 without b1), so k01 is hidden too.
	{Name: "restricted: a Venn cell of 2 contributors hides the cluster", Audience: registry.Restricted, Day: MissingK01,
		Query: `sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`, Want: none},
	{Name: "restricted: the building itself is hidden", Audience: registry.Restricted, Day: MissingK01,
		Query: `sum(linky_consumption_daily_wh{perimeter="building-b1"})`, Want: none},
	{Name: "restricted: k03 with all contributing", Audience: registry.Restricted, Day: MissingK01,
		Query: `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		Want: func(d *District) map[string]float64 {
			out := map[string]float64{}
			for _, c := range []string{"k02", "k03"} {
				out[`{cluster="`+c+`"}`], _ = d.Expected(cons, d.Clusters[c], MissingK01, -1)
			}
			return out
		}},
	{Name: "group of 20 contributing among 120 registered is hidden", Audience: registry.Public, Day: MissingK03,
		Query: `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		Want: func(d *District) map[string]float64 {
			out := map[string]float64{}
			for _, c := range []string{"k01", "k02"} {
				out[`{cluster="`+c+`"}`], _ = d.Expected(cons, d.Clusters[c], MissingK03, -1)
			}
			return out
		}},

	// Dominance.
	{Name: "production sum dominated by one unit is hidden", Audience: registry.Public, Day: DominantDay,
		Query: `sum(linky_injection_daily_wh{perimeter="producers"})`, Want: none},
	{Name: "production median survives dominance", Audience: registry.Public, Day: DominantDay,
		Query: `quantile(0.5, linky_injection_daily_wh{perimeter="producers"})`, Want: one(inj, producers, DominantDay, 0.5)},

	// Time tricks.
	{Name: "offset", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} offset 1d)`, Refused: true},
	{Name: "negative offset", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} offset -1d)`, Refused: true},
	{Name: "@ modifier", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} @ 1893456000)`, Refused: true},
	{Name: "@ end()", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"} @ end())`, Refused: true},
	{Name: "range selector", Audience: registry.Public, Day: normal,
		Query: `sum(sum_over_time(linky_consumption_daily_wh{perimeter="confluence"}[7d]))`, Refused: true},
	{Name: "subquery", Audience: registry.Public, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})[2d:1d]`, Refused: true},

	// Consent.
	{Name: "consented individual values: only covering consents", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: normal,
		Query: `linky_consumption_daily_wh{perimeter="uc3-b1"}`,
		Want: func(d *District) map[string]float64 {
			out := map[string]float64{}
			for _, p := range d.Consenting {
				out[`{__name__="linky_consumption_daily_wh", rmp="`+p+`"}`], _ = d.Daily(cons, p, normal)
			}
			return out
		}},
	{Name: "consent granted later covers later days", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: short,
		Query: `linky_consumption_daily_wh{perimeter="uc3-b1"}`,
		Want: func(d *District) map[string]float64 {
			out := map[string]float64{}
			for _, p := range append([]string{d.LateGrant}, d.Consenting...) {
				out[`{__name__="linky_consumption_daily_wh", rmp="`+p+`"}`], _ = d.Daily(cons, p, short)
			}
			return out
		}},
	{Name: "consented sum over consenting RMPs only", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="uc3-b1"})`,
		Want: func(d *District) map[string]float64 {
			v, _ := d.Expected(cons, d.Consenting, normal, -1)
			return map[string]float64{"{}": v}
		}},
	{Name: "revoked consent: that meter alone is empty", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: normal,
		Query: `linky_consumption_daily_wh{perimeter="uc3-b1",rmp="21000000000006"}`, Want: none},
	{Name: "consented caller of another use case", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC5}, Day: normal,
		Query: `linky_consumption_daily_wh{perimeter="uc3-b1"}`, Refused: true},
	{Name: "consented caller on a public perimeter per RMP", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: normal,
		Query: `linky_consumption_daily_wh{perimeter="confluence"}`, Refused: true},
	{Name: "consented min is not a listed form", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: normal,
		Query: `min(linky_consumption_daily_wh{perimeter="uc3-b1"})`, Refused: true},
	{Name: "consented regex on rmp", Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: normal,
		Query: `linky_consumption_daily_wh{perimeter="uc3-b1",rmp=~".+"}`, Refused: true},

	// Syntax and callers.
	{Name: "unparsable", Audience: registry.Public, Day: normal, Query: `sum(`, Refused: true},
	{Name: "literal only", Audience: registry.Public, Day: normal, Query: `1+1`, Refused: true},
	{Name: "experimental function", Audience: registry.Public, Day: normal,
		Query: `sum(sort_by_label(linky_consumption_daily_wh{perimeter="confluence"}, "rmp"))`, Refused: true},
	{Name: "unknown audience", Audience: registry.Audience("guest"), Day: normal,
		Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})`, Refused: true},
}
