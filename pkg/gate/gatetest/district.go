// Package gatetest builds a small synthetic district with known data, and
// the table of policy rows and attacks the gate must answer or refuse. The
// table is data: the same cases can run against the gate in-process or
// through the HTTP API of a running server.
package gatetest

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// District is the synthetic district and the raw samples written for it.
type District struct {
	Registry *registry.Registry
	DB       *tsdb.DB
	// Index[metric][prm][ms] is every index reading written.
	Index map[string]map[string]map[int64]float64
	// Members of each registered set, from the construction (not the registry).
	Clusters   map[string][]string
	Building   []string // b1, in k01, restricted
	Producers  []string // in k02
	Consenting []string // uc3 consent covering everything
	LateGrant  string   // uc3 consent granted 2024-03-31
	Revoked    string   // uc3 consent revoked 2024-06-01
	Days       []localday.Day
	Now        time.Time // every day above is publishable
}

// Windows of days with data: around the 23-hour day (2024-03-31) and the
// 25-hour day (2024-10-27).
var Windows = [][2]localday.Day{
	{day("2024-03-28"), day("2024-04-02")},
	{day("2024-10-24"), day("2024-10-29")},
}

func day(s string) localday.Day {
	d, err := localday.Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}

// Day parses YYYY-MM-DD.
func Day(s string) localday.Day { return day(s) }

// Missing readings, to test counting contributors: the 10 first meters of
// k01 miss the midnight closing 2024-03-29 (so neither 03-29 nor 03-30 has their data), and 100 of k03's 120 miss the
// midnight closing 2024-10-26.
var (
	MissingK01 = Day("2024-03-29")
	MissingK03 = Day("2024-10-26")
	// DominantDay is a day the cogeneration unit injects far more than
	// all PV producers together.
	DominantDay = Day("2024-03-30")
)

func prm(i int) string { return fmt.Sprintf("%014d", 21000000000000+i) }

// energy is the synthetic truth generator (not used by the gate).
func energy(i, d int) float64 { return 4000 + float64((i*7919+d*104729)%9000) }

// Build creates the district in a temporary TSDB.
func Build(t testing.TB) *District {
	t.Helper()
	dist := &District{
		Index:    map[string]map[string]map[int64]float64{},
		Clusters: map[string][]string{},
		Now:      time.Date(2024, 11, 20, 12, 0, 0, 0, localday.Paris),
	}
	r := &registry.Registry{}
	i := 0
	add := func(m registry.Meter) {
		m.PRM = prm(i)
		i++
		r.Meters = append(r.Meters, m)
		dist.Clusters[m.Cluster] = append(dist.Clusters[m.Cluster], m.PRM)
	}
	for range 105 {
		n := len(dist.Clusters["k01"])
		m := registry.Meter{Cluster: "k01", Concentrator: "c01", Usage: "residential"}
		if n < 12 {
			m.Building = "b1"
		}
		add(m)
		if n < 12 {
			dist.Building = append(dist.Building, prm(i-1))
		}
	}
	for n := range 110 {
		m := registry.Meter{Cluster: "k02", Concentrator: "c02", Usage: "residential"}
		if n < 14 {
			m.Producer = "pv"
		} else if n == 14 {
			m.Producer = "cogeneration"
		}
		add(m)
		if m.Producer != "" {
			dist.Producers = append(dist.Producers, prm(i-1))
		}
	}
	for range 120 {
		add(registry.Meter{Cluster: "k03", Concentrator: "c03", Usage: "business"})
	}
	jan := time.Date(2024, 1, 1, 0, 0, 0, 0, localday.Paris)
	for n, p := range dist.Building[:8] {
		c := registry.Consent{PRM: p, UseCase: registry.UC3, Granted: jan}
		switch n {
		case 6:
			c.Revoked = time.Date(2024, 6, 1, 0, 0, 0, 0, localday.Paris)
			dist.Revoked = p
		case 7:
			c.Granted = Day("2024-03-31").Start()
			dist.LateGrant = p
		default:
			dist.Consenting = append(dist.Consenting, p)
		}
		r.Consents = append(r.Consents, c)
	}
	r.Perimeters = Perimeters()
	reg, err := registry.New(r)
	if err != nil {
		t.Fatalf("building registry: %v", err)
	}
	dist.Registry = reg

	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = 0
	opts.OutOfOrderTimeWindow = int64(400 * 24 * time.Hour / time.Millisecond)
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	if err != nil {
		t.Fatalf("opening tsdb: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	dist.DB = db
	app := db.Appender(context.Background())
	write := func(metric, p string, ts time.Time, v float64) {
		ms := timestamp.FromTime(ts)
		m, _ := r.Meter(p)
		if _, err := app.Append(0, labels.FromStrings(labels.MetricName, metric, catalogue.LabelRMP, p, catalogue.LabelCluster, m.Cluster), ms, v); err != nil {
			t.Fatalf("appending: %v", err)
		}
		if metric == catalogue.CurveConsumption {
			return
		}
		if dist.Index[metric] == nil {
			dist.Index[metric] = map[string]map[int64]float64{}
		}
		if dist.Index[metric][p] == nil {
			dist.Index[metric][p] = map[int64]float64{}
		}
		dist.Index[metric][p][ms] = v
	}
	for _, w := range Windows {
		for d := w[0]; !d.After(w[1]); d = d.AddDays(1) {
			dist.Days = append(dist.Days, d)
		}
	}
	for n, m := range r.Meters {
		idx, inj := float64(1_000_000+n*1000), float64(50_000+n)
		isProducer := m.Producer != ""
		for _, w := range Windows {
			for d := w[0]; ; d = d.AddDays(1) {
				dn := d.Sub(Windows[0][0])
				missing := (d == MissingK01.AddDays(1) && m.Cluster == "k01" && n < 10) ||
					(d == MissingK03.AddDays(1) && m.Cluster == "k03" && n >= 215+20)
				if !missing {
					write(catalogue.IndexConsumption, m.PRM, d.Start(), idx)
					if isProducer {
						write(catalogue.IndexInjection, m.PRM, d.Start(), inj)
					}
				}
				if d.After(w[1]) {
					break
				}
				idx += energy(n, dn)
				inj += 2000 + float64((n*31+dn*17)%3000)
				if m.Producer == "cogeneration" && d == DominantDay {
					inj += 500_000
				}
				if m.Building == "b1" {
					for s := d.Start().Add(30 * time.Minute); !s.After(d.End()); s = s.Add(30 * time.Minute) {
						write(catalogue.CurveConsumption, m.PRM, s, 100+float64((n*13+int(s.Unix()/1800))%900))
					}
				}
			}
		}
		if n%50 == 49 {
			if err := app.Commit(); err != nil {
				t.Fatalf("commit: %v", err)
			}
			app = db.Appender(context.Background())
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return dist
}

// Perimeters registered in the district.
func Perimeters() []registry.Perimeter {
	return []registry.Perimeter{
		{Name: "confluence", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
			Select: registry.Selector{All: true}, GroupBy: []string{catalogue.LabelCluster}},
		{Name: "cluster-k01", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
			Select: registry.Selector{Clusters: []string{"k01"}}},
		{Name: "building-b1", UseCase: registry.UC2, Audience: registry.Restricted, Flow: "consumption",
			Select: registry.Selector{Buildings: []string{"b1"}}},
		{Name: "producers", UseCase: registry.UC4, Audience: registry.Public, Flow: "production",
			Select: registry.Selector{Producers: []string{"pv", "cogeneration"}}},
		{Name: "uc3-b1", UseCase: registry.UC3, Audience: registry.Consented, Flow: "consumption",
			Select: registry.Selector{Buildings: []string{"b1"}}},
	}
}

// Daily is the daily energy of prm on day d recomputed from the raw index
// samples written (exact midnight stamps), and whether it exists.
func (d *District) Daily(metric, prm string, day localday.Day) (float64, bool) {
	idx := d.Index[metric][prm]
	a, okA := idx[timestamp.FromTime(day.Start())]
	b, okB := idx[timestamp.FromTime(day.End())]
	if !okA || !okB {
		return 0, false
	}
	return b - a, true
}

// Expected computes an aggregate over prms from the raw samples, and the
// number of contributors.
func (d *District) Expected(metric string, prms []string, day localday.Day, q float64) (float64, int) {
	var vals []float64
	for _, p := range prms {
		if v, ok := d.Daily(metric, p, day); ok {
			vals = append(vals, v)
		}
	}
	if q < 0 {
		s := 0.0
		for _, v := range vals {
			s += v
		}
		return s, len(vals)
	}
	// Quartile by sorting and interpolating, rounded up to whole kWh.
	for i := range vals {
		for j := i + 1; j < len(vals); j++ {
			if vals[j] < vals[i] {
				vals[i], vals[j] = vals[j], vals[i]
			}
		}
	}
	if len(vals) == 0 {
		return math.NaN(), 0
	}
	pos := q * float64(len(vals)-1)
	lo := int(pos)
	v := vals[lo]
	if lo+1 < len(vals) {
		v += (vals[lo+1] - vals[lo]) * (pos - float64(lo))
	}
	return math.Ceil(v/1000) * 1000, len(vals)
}

// All returns every PRM of the clusters.
func (d *District) All() []string {
	var out []string
	for _, c := range []string{"k01", "k02", "k03"} {
		out = append(out, d.Clusters[c]...)
	}
	return out
}
