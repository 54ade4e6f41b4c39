package e2e

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/server"
	"github.com/metergate/metergate/remote/server/servertest"
)

// A small district, written through remote-write, whose daily energies the
// test recomputes from what it wrote:
//
//	k01: 120 meters (c01), the first 15 in the new building b1 (UC1);
//	k02: 115 meters (c02), the first 14 in the renovated building b2 (UC2,
//	     UC3), then 12 PV producers, then 2 EV charging stations (UC5).
//
// Thirty k01 meters outside b1 miss the midnight closing 2024-03-10, so
// k01 has 90 < 101 contributors on 03-10 and 03-11: hidden to the public.
var (
	firstDay   = day("2024-03-01")
	lastDay    = day("2024-04-05")
	missingDay = day("2024-03-10") // its closing midnight is missed
	curveDays  = []localday.Day{day("2024-04-01"), day("2024-04-02")}
	now        = time.Date(2024, 4, 10, 12, 0, 0, 0, localday.Paris) // D+2: through 04-08
)

const (
	nK01, nB1, nK02, nB2, nProducers, nStations = 120, 15, 115, 14, 12, 2
	b1Surface, b1Target                         = 1200.0, 60.0
	inhK01, inhK02                              = 310, 260
	// Extra caller: a renovation app with UC2 consent-based access (curves).
	renovationToken = "renovation-token-0123456789"
)

func day(s string) localday.Day {
	d, err := localday.Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}

func prm(i int) string { return fmt.Sprintf("%014d", 21000000000000+i) }

type meter struct {
	i                 int
	prm, cluster, bld string
	producer, station string
}

// district is the fixture and everything written.
type district struct {
	meters []meter
	reg    *registry.Registry
	// index[metric][prm][local midnight] = register value written.
	index map[string]map[string]map[time.Time]float64
	// curves[metric][prm][t] = power written.
	curves map[string]map[string]map[time.Time]float64
	// consenting households per use case (consent covering the period, not revoked by now).
	uc2, uc3 []string
	stations []string
}

func (d *district) where(pred func(m meter) bool) []string {
	var out []string
	for _, m := range d.meters {
		if pred(m) {
			out = append(out, m.prm)
		}
	}
	return out
}

func newDistrict() *district {
	d := &district{index: map[string]map[string]map[time.Time]float64{}, curves: map[string]map[string]map[time.Time]float64{}}
	r := &registry.Registry{
		Clusters: []registry.Cluster{{ID: "k01", Name: "Place Nautique", Inhabitants: inhK01}, {ID: "k02", Name: "Marché Gare", Inhabitants: inhK02}},
		Buildings: []registry.Building{
			{ID: "b1", Name: "Hikari", Cluster: "k01", Kind: "new", Households: nB1, SurfaceM2: b1Surface, Inhabitants: 30, TargetKWhPerM2Year: b1Target},
			{ID: "b2", Name: "Les Passerelles", Cluster: "k02", Kind: "renovated", Households: nB2, SurfaceM2: 900, Inhabitants: 28},
		},
		Stations: []registry.Station{{ID: "s1", Name: "CNR Confluence", Operator: "cnr"}, {ID: "s2", Name: "Bluely Marché", Operator: "bluely"}},
	}
	jan := time.Date(2024, 1, 1, 0, 0, 0, 0, localday.Paris)
	add := func(m meter) {
		m.i = len(d.meters)
		m.prm = prm(m.i)
		d.meters = append(d.meters, m)
		conc := "c01"
		if m.cluster == "k02" {
			conc = "c02"
		}
		r.Meters = append(r.Meters, registry.Meter{PRM: m.prm, Concentrator: conc, Cluster: m.cluster, Building: m.bld,
			Usage: "residential", Producer: m.producer, EVStation: m.station})
	}
	for n := range nK01 {
		m := meter{cluster: "k01"}
		if n < nB1 {
			m.bld = "b1"
		}
		add(m)
	}
	for n := range nK02 {
		m := meter{cluster: "k02"}
		switch {
		case n < nB2:
			m.bld = "b2"
		case n < nB2+nProducers:
			m.producer = "pv"
		case n < nB2+nProducers+nStations:
			m.station = []string{"s1", "s2"}[n-nB2-nProducers]
		}
		add(m)
	}
	b2 := d.where(func(m meter) bool { return m.bld == "b2" })
	for n, p := range b2[:7] {
		c := registry.Consent{PRM: p, UseCase: registry.UC3, Granted: jan}
		if n == 6 {
			c.Revoked = now.Add(-24 * time.Hour) // revoked before now: shares nothing
		} else {
			d.uc3 = append(d.uc3, p)
		}
		r.Consents = append(r.Consents, c)
		if n < 5 {
			r.Consents = append(r.Consents, registry.Consent{PRM: p, UseCase: registry.UC2, Granted: jan})
			d.uc2 = append(d.uc2, p)
		}
	}
	d.stations = d.where(func(m meter) bool { return m.station != "" })
	for _, p := range d.stations {
		r.Consents = append(r.Consents, registry.Consent{PRM: p, UseCase: registry.UC5, Granted: jan})
	}
	cons := func(name string, uc registry.UseCase, aud registry.Audience, s registry.Selector) registry.Perimeter {
		return registry.Perimeter{Name: name, UseCase: uc, Audience: aud, Flow: "consumption", Select: s}
	}
	conf := cons("confluence", registry.UC4, registry.Public, registry.Selector{All: true})
	conf.GroupBy = []string{"cluster"}
	r.Perimeters = []registry.Perimeter{conf,
		cons("cluster-k01", registry.UC4, registry.Public, registry.Selector{Clusters: []string{"k01"}}),
		cons("cluster-k02", registry.UC4, registry.Public, registry.Selector{Clusters: []string{"k02"}}),
		{Name: "producers", UseCase: registry.UC4, Audience: registry.Public, Flow: "production", Select: registry.Selector{Producers: []string{"pv"}}},
		cons("building-b1", registry.UC1, registry.Restricted, registry.Selector{Buildings: []string{"b1"}}),
		cons("building-b2", registry.UC2, registry.Restricted, registry.Selector{Buildings: []string{"b2"}}),
		cons("uc2-b2", registry.UC2, registry.Consented, registry.Selector{Buildings: []string{"b2"}}),
		cons("uc3-b2", registry.UC3, registry.Consented, registry.Selector{Buildings: []string{"b2"}}),
		cons("ev-stations", registry.UC5, registry.Consented, registry.Selector{Stations: []string{"s1", "s2"}}),
	}
	reg, err := registry.New(r)
	if err != nil {
		panic(err)
	}
	d.reg = reg
	return d
}

// Daily energies of meter i on day number dn (0 = firstDay), in Wh.
func consumption(i, dn int) float64 { return 4000 + float64((i*37+dn*101)%3000) }
func injection(i, dn int) float64   { return 2000 + float64((i*13+dn*7)%1000) }
func selfUse(i, dn int) float64     { return 500 + float64((i*3+dn)%200) }

// missing reports whether meter m misses the reading at the midnight that
// closes day dd.
func (m meter) missing(dd localday.Day) bool {
	return dd == missingDay && m.cluster == "k01" && m.bld == "" && m.i >= 20 && m.i < 50
}

// start launches metergate serve on loopback with the fixture's registry
// and clock, and writes the district through remote-write, day by day.
func (d *district) start(t *testing.T) *servertest.Instance {
	t.Helper()
	in := servertest.Start(t, servertest.Options{
		Registry: d.reg,
		Server:   server.Options{Now: func() time.Time { return now }},
		Edit: func(c *config.Config) {
			c.Callers = append(slices.Clone(c.Callers), config.Caller{Name: "renovation-app", Token: renovationToken,
				Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC2}})
		},
	})
	write := func(series []servertest.Series) {
		code, body := servertest.WriteV1(t, in.URL, servertest.SenderToken, series...)
		require.Equal(t, 204, code, body)
	}
	idx := map[string]float64{}
	inj := map[string]float64{}
	gen := map[string]float64{}
	record := func(metric, p string, ts time.Time, v float64) {
		if d.index[metric] == nil {
			d.index[metric] = map[string]map[time.Time]float64{}
		}
		if d.index[metric][p] == nil {
			d.index[metric][p] = map[time.Time]float64{}
		}
		d.index[metric][p][ts] = v
	}
	for dn, dd := 0, firstDay.AddDays(-1); !dd.After(lastDay); dn, dd = dn+1, dd.AddDays(1) {
		ts := dd.End() // the midnight closing dd (the first one opens firstDay)
		var batch []servertest.Series
		for _, m := range d.meters {
			if dn > 0 {
				idx[m.prm] += consumption(m.i, dn-1)
				if m.producer != "" {
					inj[m.prm] += injection(m.i, dn-1)
					gen[m.prm] += injection(m.i, dn-1) + selfUse(m.i, dn-1)
				}
			} else {
				idx[m.prm] = 1_000_000 + float64(m.i)*1000
				inj[m.prm], gen[m.prm] = 50_000, 80_000
			}
			if m.missing(dd) {
				continue
			}
			conc := map[string]string{"k01": "c01", "k02": "c02"}[m.cluster]
			put := func(metric string, v float64) {
				record(metric, m.prm, ts, v)
				batch = append(batch, servertest.Series{
					Labels:  labels.FromStrings("__name__", metric, "rmp", m.prm, "cluster", m.cluster, "concentrator", conc),
					Samples: []prompb.Sample{{Timestamp: ts.UnixMilli(), Value: v}}})
			}
			put("linky_index_wh", idx[m.prm])
			if m.producer != "" {
				put("linky_injection_index_wh", inj[m.prm])
				put("producer_generation_index_wh", gen[m.prm])
			}
		}
		write(batch)
	}
	// Curves of two days: 10-minute load curves of UC2 households, 30-minute
	// charge curves of the stations, stamped at the end of each interval.
	curve := func(metric string, p string, ls labels.Labels, stepMin int, f func(k int) float64) {
		if d.curves[metric] == nil {
			d.curves[metric] = map[string]map[time.Time]float64{}
		}
		d.curves[metric][p] = map[time.Time]float64{}
		var samples []prompb.Sample
		for _, dd := range curveDays {
			for k, t := 0, dd.Start().Add(time.Duration(stepMin)*time.Minute); !t.After(dd.End()); k, t = k+1, t.Add(time.Duration(stepMin)*time.Minute) {
				v := f(k)
				d.curves[metric][p][t] = v
				samples = append(samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: v})
			}
		}
		write([]servertest.Series{{Labels: ls, Samples: samples}})
	}
	for n, p := range d.uc2 {
		curve("linky_load_curve_watts", p, labels.FromStrings("__name__", "linky_load_curve_watts", "rmp", p, "cluster", "k02"), 10,
			func(k int) float64 { return 100 + float64((n*17+k)%500) })
	}
	for n, p := range d.stations {
		m := d.meters[slices.IndexFunc(d.meters, func(m meter) bool { return m.prm == p })]
		op := map[string]string{"s1": "cnr", "s2": "bluely"}[m.station]
		curve("ev_station_charge_power_watts", p, labels.FromStrings("__name__", "ev_station_charge_power_watts", "rmp", p, "station", m.station, "operator", op), 30,
			func(k int) float64 { return 3000 + float64((n*11+k*7)%4000) })
	}
	// Concentrators report every 30 minutes; c02 stops at 02:00 on the 10th.
	var conc []servertest.Series
	for _, c := range []struct {
		id   string
		stop time.Time
	}{{"c01", now}, {"c02", time.Date(2024, 4, 10, 2, 0, 0, 0, localday.Paris)}} {
		s := servertest.Series{Labels: labels.FromStrings("__name__", "linky_concentrator_last_collection_timestamp_seconds", "concentrator", c.id)}
		for t := now.Add(-36 * time.Hour); !t.After(c.stop); t = t.Add(30 * time.Minute) {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: float64(t.Unix())})
		}
		conc = append(conc, s)
	}
	write(conc)
	return in
}

// daily is the energy of prm on day dd from the index samples written, and
// whether both midnights were written.
func (d *district) daily(metric, p string, dd localday.Day) (float64, bool) {
	a, okA := d.index[metric][p][dd.Start()]
	b, okB := d.index[metric][p][dd.End()]
	return b - a, okA && okB
}

// sum is the total over prms on day dd and the number of contributors.
func (d *district) sum(metric string, prms []string, dd localday.Day) (float64, int) {
	s, n := 0.0, 0
	for _, p := range prms {
		if v, ok := d.daily(metric, p, dd); ok {
			s += v
			n++
		}
	}
	return s, n
}

// quartile is Prometheus's quantile (linear interpolation) rounded up to
// whole kWh, as the policy publishes it.
func (d *district) quartile(metric string, prms []string, dd localday.Day, q float64) float64 {
	var vals []float64
	for _, p := range prms {
		if v, ok := d.daily(metric, p, dd); ok {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	pos := q * float64(len(vals)-1)
	lo := int(math.Floor(pos))
	v := vals[lo]
	if lo+1 < len(vals) {
		v += (vals[lo+1] - vals[lo]) * (pos - float64(lo))
	}
	return math.Ceil(v/1000) * 1000
}
