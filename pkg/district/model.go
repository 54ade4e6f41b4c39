package district

import (
	"math"
	"time"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// The value model.
//
// The figures given for French households contradict each other if read as
// one population mean: a third of homes electrically heated at 13–20 MWh a
// year would alone lift the mean far above 4,255 kWh. The model reads them
// as two populations:
//
//   - every household has the "specific uses" load of 4,255 kWh/year on
//     average (appliances, lighting, cooking, hot water), and this load has
//     the quoted shapes: evening 17–19 h about 1.5× the mean power, night
//     (0–6 h) about 0.65×, January about 11 % of the year and June about 7 %;
//   - a third of households also heat with electricity: a heating load that
//     follows the heating degree-days of Lyon and brings their total to
//     13–20 MWh/year.
//
// Energy comes first: the energy of a meter's day is computed from its
// yearly figure, the month, the weekday, the weather and a per-day noise,
// then an intraday shape (with per-step noise) distributes it over the
// curve's steps. So the index register, the running sum of daily energies,
// is cheap to compute from the installation day, and the curve of any day
// sums exactly to the index difference.

const (
	householdKWh = 4255.0
	pvYield      = 1200.0 // kWh per kWp per year in Lyon
	lyonLonHours = 4.83 / 15
)

// householdHour is the mean-1 hourly shape of the specific-uses load.
// Hours 0–5 average 0.65, hours 17–18 average 1.5, the 24 values sum to 24.
var householdHour = [24]float64{
	0.75, 0.68, 0.63, 0.61, 0.61, 0.62, // night
	0.80, 1.05, 1.10, 1.00, 0.95, 1.00, 1.15, 1.10, 0.95, 0.90, 1.00, // day
	1.40, 1.60, 1.55, 1.35, 1.20, 1.05, 0.95, // evening
}

// householdMonth is each month's share (%) of the specific-uses load.
var householdMonth = [12]float64{11.0, 9.6, 9.2, 7.9, 7.3, 7.0, 6.9, 6.5, 7.0, 8.3, 9.3, 10.0}

// Lyon heating degree-days (base 18 °C) per month, about 2,400 a year.
var lyonHDD = [12]float64{450, 380, 300, 190, 90, 20, 0, 0, 40, 170, 320, 430}

// heatingHour: electric heaters on thermostats, setback at night, morning
// and evening comfort periods.
var heatingHour = [24]float64{
	0.7, 0.7, 0.7, 0.7, 0.7, 0.8, 1.3, 1.5, 1.2, 0.9, 0.8, 0.8,
	0.8, 0.8, 0.8, 0.8, 0.9, 1.2, 1.4, 1.5, 1.4, 1.3, 1.1, 0.9,
}

// PV monthly shares in Lyon (relative; normalised per year).
var pvMonth = [12]float64{3.5, 5.2, 8.3, 10.2, 11.5, 12.0, 12.5, 11.5, 9.3, 6.5, 3.8, 2.9}

var pvMonthSum = func() float64 {
	s := 0.0
	for _, v := range pvMonth {
		s += v
	}
	return s
}()

var hddYear = func() float64 {
	s := 0.0
	for _, v := range lyonHDD {
		s += v
	}
	return s
}()

// kinds of meter load
const (
	kindHousehold = iota
	kindBusiness
	kindCommon
	kindPV
	kindCogeneration
	kindStation
)

// business opening schedules
const (
	schedOffice     = iota // Mon–Fri 8–19
	schedShop              // Mon–Sat 9–20
	schedRestaurant        // every day 11–15, 18–23
)

// dayInfo holds what is common to all meters on one day.
type dayInfo struct {
	day        localday.Day
	n          uint64 // day number, the noise key
	start, end time.Time
	hours      float64
	month      int // 0-based
	weekday    time.Weekday
	daysInYear float64
	daysInMon  float64
	anomaly    float64 // temperature anomaly (°C-ish), smoothed over days
	hdd        float64 // heating degree-days of this day
	cloud      float64 // PV clear-sky fraction, mean about 1
	steps      map[int]*stepTable
}

// stepTable is a day's steps for one step length.
type stepTable struct {
	step  time.Duration
	ends  []int64   // ms, the interval's end (the curve's stamp)
	hour  []uint8   // local hour at the interval's start
	solar []float64 // solar hour at the interval's middle
}

var epoch = localday.Day{Year: 2000, Month: time.January, Day: 1}

func (m *Model) newDay(d localday.Day) *dayInfo {
	di := &dayInfo{day: d, start: d.Start(), end: d.End()}
	di.n = uint64(d.Sub(epoch))
	di.hours = di.end.Sub(di.start).Hours()
	di.month = int(d.Month) - 1
	di.weekday = di.start.Weekday()
	di.daysInYear = float64(localday.Day{Year: d.Year + 1, Month: 1, Day: 1}.Sub(localday.Day{Year: d.Year, Month: 1, Day: 1}))
	di.daysInMon = float64(time.Date(d.Year, d.Month+1, 0, 12, 0, 0, 0, time.UTC).Day())
	// Weather: an autocorrelated anomaly, a moving average of daily draws.
	for k := uint64(0); k < 5; k++ {
		di.anomaly += 1.6 * normal(m.seed, streamWeather, di.n-k, 0) / math.Sqrt(5)
	}
	di.hdd = max(0, lyonHDD[di.month]/di.daysInMon-0.8*di.anomaly)
	di.cloud = 0.4 + 1.2*uniform(m.seed, streamCloud, di.n, 0)
	di.steps = map[int]*stepTable{}
	return di
}

func (di *dayInfo) table(step time.Duration) *stepTable {
	if t, ok := di.steps[int(step)]; ok {
		return t
	}
	n := int(di.end.Sub(di.start) / step)
	t := &stepTable{step: step, ends: make([]int64, n), hour: make([]uint8, n), solar: make([]float64, n)}
	for i := range n {
		from := di.start.Add(time.Duration(i) * step)
		t.ends[i] = from.Add(step).UnixMilli()
		t.hour[i] = uint8(from.In(localday.Paris).Hour())
		mid := from.Add(step / 2).UTC()
		t.solar[i] = float64(mid.Hour()) + float64(mid.Minute())/60 + lyonLonHours
	}
	di.steps[int(step)] = t
	return t
}

// meterModel is what the model knows about one meter.
type meterModel struct {
	m         *registry.Meter
	idx       uint64 // noise key
	kind      int
	sched     int
	heated    bool
	baseKWh   float64 // yearly energy of the base load
	heatKWh   float64 // yearly heating energy (heated households)
	step      time.Duration
	conc      int // index in the registry's concentrators
	reconcile localday.Day
	consents  bool // has any consent record (curve candidates)
	operator  string
}

// dayEnergy is the energy of a meter-type load on a day, in Wh, and for
// producers and stations the other registers. Curves, when asked for (non
// nil), receive average power in W per step.
type dayEnergy struct {
	draw, inj, gen float64 // Wh
	sessions       int
}

// baseLevel is the daily Wh of the base load for one meter on day di.
func (m *Model) baseLevel(mm *meterModel, di *dayInfo) float64 {
	perDay := mm.baseKWh * 1000 / di.daysInYear
	noise := 1 + 0.24*(uniform(m.seed, streamDayNoise, mm.idx, di.n)-0.5)
	switch mm.kind {
	case kindHousehold:
		month := householdMonth[di.month] / 100 * di.daysInYear / di.daysInMon
		week := 0.98
		if di.weekday == time.Saturday || di.weekday == time.Sunday {
			week = 1.05
		}
		return perDay * month * week * (1 - 0.01*di.anomaly) * (di.hours / 24) * noise
	case kindCommon:
		season := 1 + 0.15*math.Cos(2*math.Pi*float64(di.day.Sub(localday.Day{Year: di.day.Year, Month: 1, Day: 10}))/di.daysInYear)
		return perDay * season * (di.hours / 24) * noise
	case kindBusiness:
		open := openHours(mm.sched, di.weekday)
		// a closed hour draws 30 % of an open one; weekly mean normalised
		rel := (0.3*24 + 0.7*open) / weeklyMeanHours[mm.sched]
		season := 1 + 0.08*math.Cos(2*math.Pi*float64(di.month)/12) + 0.05*math.Cos(4*math.Pi*(float64(di.month)-6.5)/12)
		return perDay * rel * season * (di.hours / 24) * noise
	}
	return 0
}

func (m *Model) heatLevel(mm *meterModel, di *dayInfo) float64 {
	if !mm.heated {
		return 0
	}
	noise := 1 + 0.1*(uniform(m.seed, streamDayNoise, mm.idx, di.n+1<<40)-0.5)
	return mm.heatKWh * 1000 * di.hdd / hddYear * noise
}

func open(sched int, wd time.Weekday, h int) bool {
	switch sched {
	case schedOffice:
		return wd != time.Saturday && wd != time.Sunday && h >= 8 && h < 19
	case schedShop:
		return wd != time.Sunday && h >= 9 && h < 20
	default:
		return (h >= 11 && h < 15) || (h >= 18 && h < 23)
	}
}

func openHours(sched int, wd time.Weekday) float64 {
	n := 0
	for h := range 24 {
		if open(sched, wd, h) {
			n++
		}
	}
	return float64(n)
}

var weeklyMeanHours = func() [3]float64 {
	var out [3]float64
	for s := range 3 {
		for wd := range 7 {
			out[s] += (0.3*24 + 0.7*openHours(s, time.Weekday(wd))) / 7
		}
	}
	return out
}()

// day computes a meter's energies on day di; with curve non-nil it also
// fills curve (len = steps of the meter's step length) with the curve
// matching the energy: W of consumption, of injection for producers, of
// charging for stations.
func (m *Model) day(mm *meterModel, di *dayInfo, curve []float64) dayEnergy {
	switch mm.kind {
	case kindPV, kindCogeneration:
		return m.producerDay(mm, di, curve)
	case kindStation:
		return m.stationDay(mm, di, curve)
	}
	base := m.baseLevel(mm, di)
	heat := m.heatLevel(mm, di)
	if curve != nil {
		t := di.table(mm.step)
		stepH := mm.step.Hours()
		var sb, sh float64
		for i, h := range t.hour {
			u := uniform(m.seed, streamStepNoise, mm.idx, di.n<<8+uint64(i))
			w := m.shape(mm, di.weekday, int(h)) * (0.55 + 0.9*u)
			curve[i] = w
			sb += w
			sh += heatingHour[h]
		}
		for i, h := range t.hour {
			c := base * curve[i] / sb
			if heat > 0 {
				c += heat * heatingHour[h] / sh
			}
			curve[i] = c / stepH
		}
	}
	return dayEnergy{draw: base + heat}
}

// shape is the relative intraday weight of the base load.
func (m *Model) shape(mm *meterModel, wd time.Weekday, h int) float64 {
	switch mm.kind {
	case kindHousehold:
		return householdHour[h]
	case kindBusiness:
		if open(mm.sched, wd, h) {
			return 1
		}
		return 0.3
	default: // common areas: ventilation all day, lighting evening and night, lifts by day
		w := 1.0
		if h >= 18 || h < 7 {
			w += 0.6
		}
		if h >= 7 && h < 22 {
			w += 0.3
		}
		return w
	}
}

// producerDay: generation from the installation's peak and the weather, a
// site load behind the same meter, injection what the site does not use.
func (m *Model) producerDay(mm *meterModel, di *dayInfo, inj []float64) dayEnergy {
	t := di.table(30 * time.Minute)
	stepH := 0.5
	var e dayEnergy
	peakW := mm.m.PeakKW * 1000
	var genW [50]float64
	var sum float64
	if mm.kind == kindPV {
		doy := float64(di.day.Sub(localday.Day{Year: di.day.Year, Month: 1, Day: 1}))
		daylen := 12 + 3.6*math.Sin(2*math.Pi*(doy-80)/365.25)
		rise := 12 - daylen/2
		target := mm.m.PeakKW * pvYield * 1000 * pvMonth[di.month] / pvMonthSum / di.daysInMon * di.cloud
		for i, s := range t.solar {
			x := (s - rise) / daylen
			if x <= 0 || x >= 1 {
				continue
			}
			u := uniform(m.seed, streamStepNoise, mm.idx, di.n<<8+uint64(i))
			w := math.Pow(math.Sin(math.Pi*x), 1.4) * (1 - 0.6*(1.6-di.cloud)/1.2*u)
			genW[i] = w
			sum += w
		}
		for i := range t.solar {
			if sum > 0 {
				genW[i] = min(target*genW[i]/sum/stepH, peakW)
			}
		}
	} else {
		rate := min(1, max(0.15, di.hdd/15))
		for i, h := range t.hour {
			r := rate
			if h < 5 {
				r *= 0.4
			}
			u := uniform(m.seed, streamStepNoise, mm.idx, di.n<<8+uint64(i))
			genW[i] = peakW * r * (0.92 + 0.08*u)
		}
	}
	siteMean := 0.25 * peakW
	if mm.kind == kindCogeneration {
		siteMean = 0.35 * peakW
	}
	for i, h := range t.hour {
		load := siteMean * 0.75
		if h >= 7 && h < 20 {
			load = siteMean * 1.4
		}
		g := genW[i]
		in := max(0, g-load)
		e.gen += g * stepH
		e.inj += in * stepH
		e.draw += max(0, load-g) * stepH
		if inj != nil {
			inj[i] = in
		}
	}
	return e
}

type session struct {
	start, end time.Time
	watts      float64
}

// sessions of a station started on day di (appended to buf).
func (m *Model) sessions(mm *meterModel, d localday.Day, buf []session) []session {
	n := uint64(d.Sub(epoch))
	start := d.Start()
	u := func(k, j uint64) float64 { return uniform(m.seed, streamSession, mm.idx<<20+k, n<<4+j) }
	at := func(h float64) time.Time { return start.Add(time.Duration(h * float64(time.Hour))) }
	switch mm.operator {
	case "navya":
		// the shuttle charges every night at the depot, and tops up at noon on weekdays
		buf = append(buf, session{at(22 + u(0, 0)), at(29 + u(0, 1)), 9000 + 2000*u(0, 2)})
		if wd := start.Weekday(); wd != time.Saturday && wd != time.Sunday {
			buf = append(buf, session{at(12 + 0.5*u(1, 0)), at(13.5 + 0.5*u(1, 1)), 7000})
		}
	case "cnr":
		k := 6 + int(9*u(99, 0))
		for i := range uint64(k) {
			h := 7 + 14*u(i, 0)
			if u(i, 1) < 0.4 { // DC fast charge
				buf = append(buf, session{at(h), at(h + 0.33 + 0.4*u(i, 2)), 38000 + 12000*u(i, 3)})
			} else {
				buf = append(buf, session{at(h), at(h + 1 + 2*u(i, 2)), 11000 + 11000*u(i, 3)})
			}
		}
	default: // bluely car-sharing: 7 kW AC, cars returned through the day
		k := 3 + int(7*u(99, 0))
		for i := range uint64(k) {
			h := 6 + 17*u(i, 0)
			buf = append(buf, session{at(h), at(h + 1 + 3*u(i, 2)), 6600 + 800*u(i, 3)})
		}
	}
	return buf
}

// stationDay: the charge curve is the mean power of the sessions overlapping
// each step, those of the previous evening included.
func (m *Model) stationDay(mm *meterModel, di *dayInfo, curve []float64) dayEnergy {
	var buf [40]session
	ss := m.sessions(mm, di.day.AddDays(-1), buf[:0])
	nPrev := len(ss)
	ss = m.sessions(mm, di.day, ss)
	e := dayEnergy{sessions: len(ss) - nPrev}
	t := di.table(30 * time.Minute)
	for i, end := range t.ends {
		to := time.UnixMilli(end)
		from := to.Add(-30 * time.Minute)
		var wh float64
		for _, s := range ss {
			a, b := maxTime(s.start, from), minTime(s.end, to)
			if b.After(a) {
				wh += s.watts * b.Sub(a).Hours()
			}
		}
		e.draw += wh
		if curve != nil {
			curve[i] = wh / 0.5
		}
	}
	return e
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
