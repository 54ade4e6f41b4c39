package district

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Figures the simulation must reproduce (from the brief's sources), kept
// here independently of the model's parameters.
const (
	wantHouseholdKWh  = 4255.0 // households without electric heating
	wantEveningRatio  = 1.5    // 17–19 h mean power / daily mean
	wantNightRatio    = 0.65   // 0–6 h mean power / daily mean
	wantJanuaryShare  = 0.11
	wantJuneShare     = 0.07
	wantPVYield       = 1200.0 // kWh/kWp/year
	wantHeatedShare   = 1.0 / 3
	heatedMinKWh      = 13000.0
	heatedMaxKWh      = 20000.0
	heatedThresholdWh = 9000e3 // a home above 9 MWh/year heats with electricity
)

func toLabels(ls []prompb.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

// A year of the district with every meter's curve delivered (the consent
// filter widened), every 4th meter only, to keep the test fast.
func TestYearFiguresFromSamples(t *testing.T) {
	until := localday.Day{Year: 2025, Month: time.December, Day: 31}
	reg, err := Generate(Options{Seed: 7, Until: until})
	require.NoError(t, err)
	m, err := NewModel(reg, ModelOptions{Seed: 7, Until: until, MissingRate: -1})
	require.NoError(t, err)
	m.curveFor = func(i int, _ time.Time) bool { return i%4 == 0 }

	type acc struct {
		year, jan, jun, evening, night float64 // Wh
		eveningH, nightH, hours        float64
		firstIdx, lastIdx              float64
		curveWh                        float64
		days                           int
	}
	meters := map[string]*acc{}
	pvYield := map[string]float64{}
	first := localday.Day{Year: 2025, Month: time.January, Day: 1}
	m.catchUp(first.AddDays(-1))
	// the index of Dec 31, 2024 closes the year before
	prev, err := m.Deliver(first.AddDays(-1))
	require.NoError(t, err)
	start := map[string]float64{}
	for _, conc := range prev {
		for _, s := range conc {
			if s.Labels[0].Value == catalogue.IndexConsumption {
				start[toLabels(s.Labels).Get("rmp")] = s.Samples[0].Value
			}
		}
	}
	for d := first; !d.After(until); d = d.AddDays(1) {
		out, err := m.Deliver(d)
		require.NoError(t, err)
		dayLen := d.Length().Hours()
		for _, conc := range out {
			for _, s := range conc {
				ls := toLabels(s.Labels)
				prm := ls.Get("rmp")
				switch ls.Get("__name__") {
				case catalogue.IndexConsumption:
					a := meters[prm]
					if a == nil {
						a = &acc{firstIdx: start[prm]}
						meters[prm] = a
					}
					a.lastIdx = s.Samples[0].Value
				case catalogue.CurveConsumption:
					a := meters[prm]
					step := float64(s.Samples[1].Timestamp-s.Samples[0].Timestamp) / 3.6e6
					require.InDelta(t, dayLen, step*float64(len(s.Samples)), 1e-9, "%s on %s: curve points cover the local day", prm, d)
					var dayWh float64
					for _, p := range s.Samples {
						wh := p.Value * step
						dayWh += wh
						from := time.UnixMilli(p.Timestamp).Add(-time.Duration(step * float64(time.Hour))).In(localday.Paris)
						switch h := from.Hour(); {
						case h >= 17 && h < 19:
							a.evening += wh
							a.eveningH += step
						case h < 6:
							a.night += wh
							a.nightH += step
						}
					}
					a.year += dayWh
					a.hours += dayLen
					a.curveWh += dayWh
					a.days++
					switch d.Month {
					case time.January:
						a.jan += dayWh
					case time.June:
						a.jun += dayWh
					}
				case catalogue.IndexGeneration:
					pvYield[prm] = s.Samples[0].Value
				}
			}
		}
	}
	// Households: residential, not common areas, not producers.
	var plain, heated []float64
	var ev, ni, jan, jun, yr, evH, niH, hrs float64
	for _, rm := range reg.Meters {
		a := meters[rm.PRM]
		if rm.Usage != "residential" || rm.CommonArea || rm.Producer != "" || a == nil || a.days < 365 {
			continue
		}
		// index difference over the year equals the curve energy
		require.InDelta(t, a.curveWh, a.lastIdx-a.firstIdx, 1, "meter %s: index difference vs curve energy", rm.PRM)
		if a.year > heatedThresholdWh {
			heated = append(heated, a.year/1000)
			continue
		}
		plain = append(plain, a.year/1000)
		ev += a.evening
		ni += a.night
		jan += a.jan
		jun += a.jun
		yr += a.year
		evH += a.eveningH
		niH += a.nightH
		hrs += a.hours
	}
	total := float64(len(plain) + len(heated))
	require.Greater(t, total, 1000.0)
	require.InDelta(t, wantHeatedShare, float64(len(heated))/total, 0.04, "share of electrically heated homes")
	for _, kwh := range heated {
		require.GreaterOrEqual(t, kwh, heatedMinKWh)
		require.LessOrEqual(t, kwh, heatedMaxKWh)
	}
	mean := 0.0
	for _, v := range plain {
		mean += v
	}
	mean /= float64(len(plain))
	require.InEpsilon(t, wantHouseholdKWh, mean, 0.10, "annual kWh of a household without electric heating")
	meanW := yr / hrs
	t.Logf("households %d, heated %.3f, plain mean %.0f kWh, evening %.3f, night %.3f, Jan %.4f, Jun %.4f",
		int(total), float64(len(heated))/total, mean, ev/evH/meanW, ni/niH/meanW, jan/yr, jun/yr)
	require.InDelta(t, wantEveningRatio, ev/evH/meanW, 0.1, "evening 17–19 h over mean")
	require.InDelta(t, wantNightRatio, ni/niH/meanW, 0.05, "night 0–6 h over mean")
	require.InDelta(t, wantJanuaryShare, jan/yr, 0.01, "January's share")
	require.InDelta(t, wantJuneShare, jun/yr, 0.01, "June's share")

	// PV: generation index over the year per kWp.
	var pvSum, kwp float64
	for _, rm := range reg.Meters {
		if rm.Producer != "pv" {
			continue
		}
		var startGen float64
		for _, conc := range prev {
			for _, s := range conc {
				if ls := toLabels(s.Labels); ls.Get("__name__") == catalogue.IndexGeneration && ls.Get("rmp") == rm.PRM {
					startGen = s.Samples[0].Value
				}
			}
		}
		pvSum += (pvYield[rm.PRM] - startGen) / 1000
		kwp += rm.PeakKW
	}
	t.Logf("PV yield %.0f kWh/kWp", pvSum/kwp)
	require.InEpsilon(t, wantPVYield, pvSum/kwp, 0.10, "PV yield kWh/kWp/year")
}

// A month of real delivery: every series valid, curves only where a consent
// is in force, index differences equal curve energy, DST days of 23 and 25
// hours, samples of each series in time order.
func TestDeliveryRules(t *testing.T) {
	until := localday.Day{Year: 2026, Month: time.November, Day: 5}
	reg, err := Generate(Options{Seed: 3, Until: until})
	require.NoError(t, err)
	w := &recordingWriter{}
	_, err = Simulate(context.Background(), reg, Config{Model: ModelOptions{Seed: 3, Until: until}, Days: 12,
		Now: func() time.Time { return until.End().Add(10 * time.Hour) }}, w)
	require.NoError(t, err)
	// 2026-10-25 is the 25-hour day.
	curveDays := map[string]map[localday.Day]float64{} // rmp → day → Wh, complete days only
	idx := map[string]map[localday.Day]float64{}
	points := map[localday.Day]map[int]int{} // day → points per day of each step seen
	for _, s := range w.series {
		ls := toLabels(s.Labels)
		_, err := catalogue.Validate(ls)
		require.NoError(t, err, ls.String())
		for j := 1; j < len(s.Samples); j++ {
			require.Less(t, s.Samples[j-1].Timestamp, s.Samples[j].Timestamp)
		}
		prm := ls.Get("rmp")
		switch ls.Get("__name__") {
		case catalogue.CurveConsumption, catalogue.CurveEVCharge:
			for _, p := range s.Samples {
				require.True(t, reg.CurveCollectable(prm, time.UnixMilli(p.Timestamp)), "curve of %s without consent", prm)
			}
			step := time.Duration(s.Samples[1].Timestamp-s.Samples[0].Timestamp) * time.Millisecond
			d := localday.Of(time.UnixMilli(s.Samples[0].Timestamp - 1))
			if points[d] == nil {
				points[d] = map[int]int{}
			}
			points[d][int(step.Minutes())] = max(points[d][int(step.Minutes())], len(s.Samples))
			if curveDays[prm] == nil {
				curveDays[prm] = map[localday.Day]float64{}
			}
			if time.Duration(len(s.Samples))*step != d.Length() {
				continue // consent granted or revoked that day: a partial curve
			}
			for _, p := range s.Samples {
				curveDays[prm][d] += p.Value * step.Hours()
			}
		case catalogue.IndexConsumption:
			if idx[prm] == nil {
				idx[prm] = map[localday.Day]float64{}
			}
			at := time.UnixMilli(s.Samples[0].Timestamp)
			require.True(t, at.Equal(localday.Of(at).Start()), "index stamped at local midnight")
			idx[prm][localday.Of(at).AddDays(-1)] = s.Samples[0].Value
		}
	}
	long := localday.Day{Year: 2026, Month: time.October, Day: 25}
	require.Equal(t, 50, points[long][30], "30-min points on the 25-hour day")
	require.Equal(t, 150, points[long][10], "10-min points on the 25-hour day")
	require.Equal(t, 48, points[long.AddDays(1)][30])
	require.Equal(t, 144, points[long.AddDays(1)][10])
	checked := 0
	for prm, days := range curveDays {
		for d, wh := range days {
			a, okA := idx[prm][d.AddDays(-1)]
			b, okB := idx[prm][d]
			if okA && okB {
				require.InDelta(t, wh, b-a, 1, "%s on %s", prm, d)
				checked++
			}
		}
	}
	require.Greater(t, checked, 100)
	// The registry round-trips through Save and Load.
	dir := t.TempDir()
	require.NoError(t, registry.Save(dir, reg))
	back, err := registry.Load(dir)
	require.NoError(t, err)
	require.Equal(t, reg.Meters, back.Meters)
	require.Equal(t, reg.Perimeters, back.Perimeters)
	require.Equal(t, len(reg.Consents), len(back.Consents))
	for i := range reg.Consents {
		require.True(t, reg.Consents[i].Granted.Equal(back.Consents[i].Granted))
		require.True(t, reg.Consents[i].Revoked.Equal(back.Consents[i].Revoked))
	}
	require.Equal(t, reg.Clusters, back.Clusters)
	require.Equal(t, reg.Buildings, back.Buildings)
	require.Equal(t, reg.Concentrators, back.Concentrators)
}

type recordingWriter struct{ series []prompb.TimeSeries }

func (r *recordingWriter) Write(_ context.Context, ss []prompb.TimeSeries) error {
	r.series = append(r.series, ss...)
	return nil
}
func (r *recordingWriter) Flush(context.Context) error { return nil }

// The seed's roll-out figures are reproducible, and every cluster and Venn
// cell of the consumption perimeters is large enough: a cell inside only
// public perimeters holds at least 101 meters, one inside a restricted
// perimeter at least 11.
func TestRolloutAndPerimeters(t *testing.T) {
	until := localday.Day{Year: 2017, Month: time.November, Day: 30}
	reg, err := Generate(Options{Seed: 5, Until: until, Installed: 5255})
	require.NoError(t, err)
	require.Len(t, reg.Meters, 7692)
	require.Len(t, reg.Concentrators, 61)
	require.Len(t, reg.Clusters, 30)
	m, err := NewModel(reg, ModelOptions{Seed: 5, Until: until, Reconciled: 0.888})
	require.NoError(t, err)
	installed, reconciled := 0, 0
	for c := range reg.Concentrators {
		for _, s := range m.Readings(c, until, until.End(), until.End()) {
			switch s.Labels[0].Value {
			case catalogue.ConcInstalled:
				installed += int(s.Samples[0].Value)
			case catalogue.ConcReconciled:
				reconciled += int(s.Samples[0].Value)
			}
		}
	}
	require.Equal(t, 5255, installed)
	require.InDelta(t, 0.888, float64(reconciled)/float64(installed), 0.001)

	inh := 0
	for _, c := range reg.Clusters {
		inh += c.Inhabitants
	}
	require.Equal(t, 8000, inh)
	producers := 0
	for _, rm := range reg.Meters {
		if rm.Producer != "" {
			producers++
		}
	}
	require.Equal(t, 18, producers)
	require.Len(t, reg.Stations, 5)

	full, err := Generate(Options{Seed: 5, Until: localday.Day{Year: 2026, Month: time.June, Day: 1}})
	require.NoError(t, err)
	d := localday.Day{Year: 2026, Month: time.June, Day: 1}
	// Sums and quartiles each have their Venn cells (registry forms).
	for _, form := range []string{"sum", "quartile"} {
		cells := map[string]int{}
		minOf := map[string]int{}
		for i := range full.Meters {
			key := ""
			threshold := 0
			for _, p := range full.Perimeters {
				if p.Flow != "consumption" || p.Audience == registry.Consented || !p.Publishes(form) || !p.Select.Match(&full.Meters[i]) {
					continue
				}
				key += p.Name + "|"
				th := 101
				if p.Audience == registry.Restricted {
					th = 11
				}
				if threshold == 0 || th < threshold {
					threshold = th
				}
			}
			cells[key]++
			minOf[key] = threshold
		}
		for key, n := range cells {
			require.GreaterOrEqual(t, n, minOf[key], "Venn cell %q of the %s partition", key, form)
		}
	}
	require.NoError(t, gate.CheckPartition(full), "the gate's own check")
	withHouseholds := 0
	for _, c := range full.Clusters {
		residential := 0
		for _, m := range full.Meters {
			if m.Cluster == c.ID && m.Usage == "residential" {
				residential++
			}
		}
		p, ok := full.Perimeter("households-"+c.ID, d)
		if !ok {
			require.Less(t, residential, 101, "cluster %s has the households to publish quartiles", c.ID)
			continue
		}
		withHouseholds++
		require.Equal(t, residential, len(full.Members(p, d)), "households of %s", c.ID)
		require.False(t, p.Publishes("sum"), "households publish quartiles only")
	}
	require.Greater(t, withHouseholds, 20)
	for _, c := range full.Clusters {
		p, ok := full.Perimeter("cluster-"+c.ID, d)
		require.True(t, ok)
		require.GreaterOrEqual(t, len(full.Members(p, d)), 101)
	}
}
