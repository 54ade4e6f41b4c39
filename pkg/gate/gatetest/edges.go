package gatetest

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Edges is a small district whose index samples sit on every edge of the
// definition of daily energy (readDaily): readings at and around the
// tolerance's bound, several samples in a window, series of one RMP that
// agree, split or disagree, an index going down or flat, stale markers, on
// a 24-, a 23- and a 25-hour day. Whoever computes daily energy (the gate
// from raw samples, or an engine told by the gate) must find Want.
type Edges struct {
	Registry *registry.Registry
	Samples  []Sample
	Days     []localday.Day
	Now      time.Time
	// Want is the daily energy of each contributing RMP per day.
	Want map[localday.Day]map[string]float64
}

// Sample is one raw sample.
type Sample struct {
	Labels labels.Labels
	T      int64
	V      float64
}

// EdgePerimeter is the consented perimeter (uc3) holding every meter of
// Edges; EdgeRestricted the restricted one (uc2) over the same meters.
const (
	EdgePerimeter  = "edges"
	EdgeRestricted = "edges-r"
)

// BuildEdges builds the edge district for a reading tolerance tol.
func BuildEdges(tol time.Duration) *Edges {
	e := &Edges{
		Days: []localday.Day{Day("2024-03-28"), Day("2024-03-31"), Day("2024-10-27")},
		Now:  time.Date(2024, 11, 20, 12, 0, 0, 0, localday.Paris),
		Want: map[localday.Day]map[string]float64{},
	}
	r := &registry.Registry{}
	jan := time.Date(2024, 1, 1, 0, 0, 0, 0, localday.Paris)
	n := 0
	meter := func() string {
		p := fmt.Sprintf("%014d", 22000000000000+n)
		n++
		r.Meters = append(r.Meters, registry.Meter{PRM: p, Cluster: "e01", Concentrator: "ce1", Usage: "residential"})
		r.Consents = append(r.Consents, registry.Consent{PRM: p, UseCase: registry.UC3, Granted: jan})
		return p
	}
	add := func(prm, series string, t time.Time, v float64) {
		ls := labels.FromStrings(labels.MetricName, catalogue.IndexConsumption, catalogue.LabelRMP, prm, catalogue.LabelCluster, series)
		e.Samples = append(e.Samples, Sample{Labels: ls, T: t.UnixMilli(), V: v})
	}
	ms := time.Millisecond
	type edge struct {
		name string
		// write writes the samples of day d (M0, M1 its midnights; base
		// is a day-specific index) and returns the energy, or NaN.
		write func(prm string, m0, m1 time.Time, base float64) float64
	}
	edges := []edge{
		{"exact midnights", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e01", m1, b+500)
			return 500
		}},
		{"opening reading at M0−tol, outside the window", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0.Add(-tol), b)
			add(p, "e01", m1, b+500)
			return math.NaN()
		}},
		{"opening reading at M0−tol+1ms, inside", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0.Add(-tol+ms), b)
			add(p, "e01", m1.Add(-tol+ms), b+600)
			return 600
		}},
		{"closing reading at M1−tol, outside", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e01", m1.Add(-tol), b+650)
			return math.NaN()
		}},
		{"two samples in a window: the last", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0.Add(-2*time.Minute), b-100)
			add(p, "e01", m0.Add(-time.Minute), b)
			add(p, "e01", m1.Add(-3*time.Minute), b+650)
			add(p, "e01", m1, b+700)
			return 700
		}},
		{"readings just after the midnights", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0.Add(ms), b)
			add(p, "e01", m1.Add(ms), b+500)
			return math.NaN()
		}},
		{"two series agreeing", func(p string, m0, m1 time.Time, b float64) float64 {
			for _, s := range []string{"e01", "e02"} {
				add(p, s, m0, b)
				add(p, s, m1, b+800)
			}
			return 800
		}},
		{"opening and closing in different series", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e02", m1, b+900)
			return 900
		}},
		{"two series disagreeing at the close", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e01", m1, b+1000)
			add(p, "e02", m1, b+1100)
			return math.NaN()
		}},
		{"index going down (meter replaced)", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e01", m1, b-1)
			return math.NaN()
		}},
		{"flat index: zero, present", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e01", m1, b)
			return 0
		}},
		{"no closing reading", func(p string, m0, _ time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			return math.NaN()
		}},
		{"stale marker after the closing reading, in its window", func(p string, m0, m1 time.Time, b float64) float64 {
			add(p, "e01", m0, b)
			add(p, "e01", m1.Add(-time.Minute), b+1200)
			add(p, "e01", m1.Add(-30*time.Second), math.Float64frombits(value.StaleNaN))
			return 1200
		}},
	}
	// Plain meters, so that sets pass the restricted threshold (11).
	for range 12 {
		edges = append(edges, edges[0])
	}
	var prms []string
	for k, ed := range edges {
		p := meter()
		prms = append(prms, p)
		for j, d := range e.Days {
			base := float64(1_000_000*(j+1) + 10_000*k)
			v := ed.write(p, d.Start(), d.End(), base)
			if e.Want[d] == nil {
				e.Want[d] = map[string]float64{}
			}
			if !math.IsNaN(v) {
				e.Want[d][p] = v
			}
		}
	}
	r.Perimeters = []registry.Perimeter{
		{Name: EdgePerimeter, UseCase: registry.UC3, Audience: registry.Consented, Flow: "consumption",
			Select: registry.Selector{PRMs: prms}},
		{Name: EdgeRestricted, UseCase: registry.UC2, Audience: registry.Restricted, Flow: "consumption",
			Select: registry.Selector{PRMs: prms}},
	}
	reg, err := registry.New(r)
	if err != nil {
		panic(fmt.Sprintf("gatetest: the edge registry: %v", err))
	}
	e.Registry = reg
	return e
}

// EdgeCase is one instant query over the edge district, at the midnight
// closing Day, and its answer: label set → value.
type EdgeCase struct {
	Name     string
	Audience registry.Audience
	UseCases []registry.UseCase
	Query    string
	Day      localday.Day
	Want     map[string]float64
}

// Cases are, for each day, the consented individual daily energies (every
// RMP's, as Want says) and the restricted sum and quartiles over them,
// recomputed here from Want.
func (e *Edges) Cases() []EdgeCase {
	var out []EdgeCase
	for _, d := range e.Days {
		indiv := map[string]float64{}
		var vals []float64
		sum := 0.0
		for prm, v := range e.Want[d] {
			indiv[labels.FromStrings(labels.MetricName, "linky_consumption_daily_wh", catalogue.LabelRMP, prm).String()] = v
			vals = append(vals, v)
		}
		slices.Sort(vals)
		for _, v := range vals {
			sum += v
		}
		out = append(out,
			EdgeCase{Name: "individual daily energies on " + d.String(), Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}, Day: d,
				Query: fmt.Sprintf(`linky_consumption_daily_wh{perimeter=%q}`, EdgePerimeter), Want: indiv},
			EdgeCase{Name: "restricted sum on " + d.String(), Audience: registry.Restricted, UseCases: []registry.UseCase{registry.UC2}, Day: d,
				Query: fmt.Sprintf(`sum(linky_consumption_daily_wh{perimeter=%q})`, EdgeRestricted), Want: map[string]float64{"{}": sum}})
		for _, q := range []float64{0.25, 0.5, 0.75} {
			rank := q * float64(len(vals)-1)
			lo := math.Floor(rank)
			x := vals[int(lo)] + (vals[min(int(lo)+1, len(vals)-1)]-vals[int(lo)])*(rank-lo)
			out = append(out, EdgeCase{Name: fmt.Sprintf("restricted quantile %v on %s", q, d), Audience: registry.Restricted, UseCases: []registry.UseCase{registry.UC2}, Day: d,
				Query: fmt.Sprintf(`quantile(%v, linky_consumption_daily_wh{perimeter=%q})`, q, EdgeRestricted), Want: map[string]float64{"{}": math.Ceil(x/1000) * 1000}})
		}
	}
	return out
}

// OpenTSDB opens an empty TSDB in a test directory, closed at the end of
// the test, whose out-of-order window takes any day of the fixtures
// (1,000 days) whatever order they are written in.
func OpenTSDB(t testing.TB) *tsdb.DB {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = int64(1000 * 24 * time.Hour / time.Millisecond)
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	if err != nil {
		t.Fatalf("opening a TSDB: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
