package district

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// ModelOptions tune what the head-end delivers.
type ModelOptions struct {
	Seed uint64
	// Until is the last day of the simulated window; reconciliation is
	// placed relative to it. Zero: yesterday.
	Until localday.Day
	// Reconciled is the share of the meters installed by Until that their
	// concentrator has reconciled by then (default 1; the seed's 0.888).
	// G1 concentrators reconcile worse than G3 ones.
	Reconciled float64
	// MissingRate is the share of meter-days lost over PLC (default 0.003;
	// negative: none).
	MissingRate float64
}

// Model computes the district's readings day after day. It keeps each
// meter's registers, so days must be delivered in order (Deliver catches up
// silently on skipped days).
type Model struct {
	seed    uint64
	reg     *registry.Registry
	opts    ModelOptions
	meters  []meterModel
	regs    []registers
	next    localday.Day // first day whose energy is not yet in regs
	byConc  [][]int      // meter indices per concentrator
	labels  []meterLabels
	concLab [][4][]prompb.Label
	scratch []float64

	// curveFor decides whether a curve point is sent; tests widen it.
	curveFor func(i int, t time.Time) bool
}

type registers struct {
	draw, inj, gen float64 // Wh since installation
	sessions       int64
}

type meterLabels struct {
	index, curve, inj, gen, sessions []prompb.Label
}

// NewModel prepares the model of a generated (or loaded) district.
func NewModel(reg *registry.Registry, opts ModelOptions) (*Model, error) {
	if opts.Until.IsZero() {
		opts.Until = localday.Of(time.Now()).AddDays(-1)
	}
	if opts.Reconciled == 0 {
		opts.Reconciled = 1
	}
	if opts.Reconciled < 0 || opts.Reconciled > 1 {
		return nil, fmt.Errorf("reconciled share must be in (0, 1], not %g", opts.Reconciled)
	}
	if opts.MissingRate == 0 {
		opts.MissingRate = 0.003
	}
	m := &Model{seed: opts.Seed, reg: reg, opts: opts}
	m.curveFor = func(i int, t time.Time) bool {
		return m.meters[i].consents && reg.CurveCollectable(m.meters[i].m.PRM, t)
	}
	concIdx := map[string]int{}
	for i, c := range reg.Concentrators {
		concIdx[c.ID] = i
	}
	kind := map[string]string{}
	for _, b := range reg.Buildings {
		kind[b.ID] = b.Kind
	}
	station := map[string]string{}
	for _, s := range reg.Stations {
		station[s.ID] = s.Operator
	}
	hasConsent := map[string]bool{}
	for _, c := range reg.Consents {
		hasConsent[c.PRM] = true
	}
	m.byConc = make([][]int, len(reg.Concentrators))
	m.meters = make([]meterModel, len(reg.Meters))
	m.regs = make([]registers, len(reg.Meters))
	m.labels = make([]meterLabels, len(reg.Meters))
	for i := range reg.Meters {
		rm := &reg.Meters[i]
		c, ok := concIdx[rm.Concentrator]
		if !ok {
			return nil, fmt.Errorf("meter %s: unknown concentrator %q", rm.PRM, rm.Concentrator)
		}
		m.byConc[c] = append(m.byConc[c], i)
		m.meters[i] = m.meterModel(i, rm, c, kind[rm.Building], station[rm.EVStation], hasConsent[rm.PRM])
		m.labels[i] = meterLabelsOf(rm, station[rm.EVStation])
		if m.next.IsZero() || (!rm.Installed.IsZero() && rm.Installed.Before(m.next)) {
			m.next = rm.Installed
		}
	}
	if m.next.IsZero() {
		m.next = opts.Until
	}
	m.reconcile()
	for _, c := range reg.Concentrators {
		base := []prompb.Label{{Name: catalogue.LabelCluster, Value: c.Cluster}, {Name: catalogue.LabelConcentrator, Value: c.ID}}
		var ls [4][]prompb.Label
		for k, name := range []string{catalogue.ConcInstalled, catalogue.ConcReconciled, catalogue.ConcLastCollection, catalogue.ConcInfo} {
			ls[k] = append([]prompb.Label{{Name: "__name__", Value: name}}, base...)
		}
		ls[3] = append(ls[3], prompb.Label{Name: catalogue.LabelPLC, Value: c.PLC})
		m.concLab = append(m.concLab, ls)
	}
	m.scratch = make([]float64, 160)
	return m, nil
}

func (m *Model) meterModel(i int, rm *registry.Meter, conc int, bkind, operator string, consents bool) meterModel {
	u := func(j uint64) float64 { return uniform(m.seed, streamScale, uint64(i), j) }
	mm := meterModel{m: rm, idx: uint64(i), conc: conc, step: 30 * time.Minute, consents: consents, operator: operator}
	if bkind == "renovated" || bkind == "estate" {
		mm.step = 10 * time.Minute
	}
	switch {
	case rm.Producer == "pv":
		mm.kind = kindPV
	case rm.Producer == "cogeneration":
		mm.kind = kindCogeneration
	case rm.EVStation != "":
		mm.kind = kindStation
		mm.step = 30 * time.Minute
	case rm.CommonArea:
		mm.kind = kindCommon
		mm.baseKWh = map[string]float64{"renovated": 9000, "estate": 20000, "new": 6000}[bkind]
		if mm.baseKWh == 0 {
			mm.baseKWh = 8000
		}
		mm.baseKWh *= 0.8 + 0.4*u(1)
	case rm.Usage == "business":
		mm.kind = kindBusiness
		mm.baseKWh = min(250_000, max(2000, 15000*math.Exp(0.9*normal(m.seed, streamScale, uint64(i), 2))))
		switch s := u(3); {
		case s < 0.5:
			mm.sched = schedOffice
		case s < 0.85:
			mm.sched = schedShop
		default:
			mm.sched = schedRestaurant
		}
	default:
		mm.kind = kindHousehold
		mm.baseKWh = householdKWh * (0.6 + 0.8*u(1))
		switch bkind { // better-insulated, newer homes use a little less
		case "renovated":
			mm.baseKWh *= 0.85
		case "estate":
			mm.baseKWh *= 0.9
		case "new":
			mm.baseKWh *= 0.8
		}
		if bkind != "new" && uniform(m.seed, streamHeat, uint64(i), 0) < 1.0/3 {
			mm.heated = true
			total := 13500 + 5000*uniform(m.seed, streamHeat, uint64(i), 1)
			mm.heatKWh = total - mm.baseKWh
		}
	}
	return mm
}

func meterLabelsOf(rm *registry.Meter, operator string) meterLabels {
	place := []prompb.Label{{Name: catalogue.LabelCluster, Value: rm.Cluster}, {Name: catalogue.LabelConcentrator, Value: rm.Concentrator}}
	with := func(name string, extra ...prompb.Label) []prompb.Label {
		ls := append([]prompb.Label{{Name: "__name__", Value: name}}, place...)
		ls = append(ls, extra...)
		slices.SortFunc(ls, func(a, b prompb.Label) int {
			switch {
			case a.Name < b.Name:
				return -1
			case a.Name > b.Name:
				return 1
			}
			return 0
		})
		return ls
	}
	rmp := prompb.Label{Name: catalogue.LabelRMP, Value: rm.PRM}
	usage := prompb.Label{Name: catalogue.LabelUsage, Value: rm.Usage}
	ml := meterLabels{index: with(catalogue.IndexConsumption, rmp, usage), curve: with(catalogue.CurveConsumption, rmp, usage)}
	switch {
	case rm.Producer != "":
		kind := prompb.Label{Name: catalogue.LabelKind, Value: rm.Producer}
		ml.inj = with(catalogue.IndexInjection, rmp, kind)
		ml.gen = with(catalogue.IndexGeneration, rmp, kind)
		ml.curve = with(catalogue.CurveInjection, rmp, kind)
	case rm.EVStation != "":
		st := []prompb.Label{rmp, {Name: catalogue.LabelStation, Value: rm.EVStation}, {Name: catalogue.LabelOperator, Value: operator}}
		ml.curve = with(catalogue.CurveEVCharge, st...)
		ml.sessions = with(catalogue.EVSessions, st...)
	}
	return ml
}

// reconcile dates each meter's reconciliation: within a month of its
// installation, except that only the share opts.Reconciled of the meters
// installed by Until is reconciled by then (G1 areas lag); the others are
// reconciled in the weeks after Until.
func (m *Model) reconcile() {
	until := m.opts.Until
	var installed []int
	for i := range m.meters {
		inst := m.meters[i].m.Installed
		delay := int(30 * uniform(m.seed, streamReconcile, uint64(i), 0))
		m.meters[i].reconcile = inst.AddDays(delay)
		if !inst.After(until) {
			installed = append(installed, i)
		}
	}
	key := func(i int) float64 {
		k := uniform(m.seed, streamReconcile, uint64(i), 1)
		if m.reg.Concentrators[m.meters[i].conc].PLC == "G1" {
			k += 0.1
		}
		return k
	}
	slices.SortFunc(installed, func(a, b int) int { return compareFloat(key(a), key(b)) })
	n := int(math.Round(m.opts.Reconciled * float64(len(installed))))
	for j, i := range installed {
		mm := &m.meters[i]
		if j < n {
			if mm.reconcile.After(until) {
				mm.reconcile = until
			}
		} else if !mm.reconcile.After(until) {
			mm.reconcile = until.AddDays(10 + int(50*uniform(m.seed, streamReconcile, uint64(i), 2)))
		}
	}
}

func (m *Model) missing(i int, di *dayInfo) bool {
	return m.opts.MissingRate > 0 && uniform(m.seed, streamMiss, uint64(i), di.n) < m.opts.MissingRate
}

// accumulate adds day di's energy to every installed meter's registers;
// with emit it also returns the delivered series, per concentrator.
func (m *Model) accumulate(di *dayInfo, emit bool) [][]prompb.TimeSeries {
	var out [][]prompb.TimeSeries
	var pool []prompb.Sample
	take := func(n int) []prompb.Sample {
		if len(pool)+n > cap(pool) {
			pool = make([]prompb.Sample, 0, max(n, 64*1024))
		}
		s := pool[len(pool) : len(pool)+n : len(pool)+n]
		pool = pool[:len(pool)+n]
		return s
	}
	if emit {
		out = make([][]prompb.TimeSeries, len(m.byConc))
	}
	endMs := di.end.UnixMilli()
	for c, idxs := range m.byConc {
		var series []prompb.TimeSeries
		if emit {
			series = make([]prompb.TimeSeries, 0, len(idxs)+16)
		}
		for _, i := range idxs {
			mm := &m.meters[i]
			if !mm.m.ActiveOn(di.day) {
				continue
			}
			deliver := emit && !mm.reconcile.After(di.day) && !m.missing(i, di)
			var curve []float64
			if deliver && m.curveFor(i, di.end) || deliver && m.curveFor(i, di.start.Add(mm.step)) {
				curve = m.scratch[:len(di.table(mm.step).ends)]
			}
			e := m.day(mm, di, curve)
			r := &m.regs[i]
			r.draw += e.draw
			r.inj += e.inj
			r.gen += e.gen
			r.sessions += int64(e.sessions)
			if !deliver {
				continue
			}
			lab := &m.labels[i]
			one := func(ls []prompb.Label, v float64) {
				s := take(1)
				s[0] = prompb.Sample{Timestamp: endMs, Value: v}
				series = append(series, prompb.TimeSeries{Labels: ls, Samples: s})
			}
			one(lab.index, math.Round(r.draw))
			if lab.inj != nil {
				one(lab.inj, math.Round(r.inj))
				one(lab.gen, math.Round(r.gen))
			}
			if lab.sessions != nil {
				one(lab.sessions, float64(r.sessions))
			}
			if curve != nil {
				ends := di.table(mm.step).ends
				s := take(len(ends))[:0]
				for k, ts := range ends {
					if m.curveFor(i, time.UnixMilli(ts)) {
						s = append(s, prompb.Sample{Timestamp: ts, Value: curve[k]})
					}
				}
				if len(s) > 0 {
					series = append(series, prompb.TimeSeries{Labels: lab.curve, Samples: s})
				}
			}
		}
		if emit {
			out[c] = series
		}
	}
	return out
}

// catchUp accumulates the days before d without delivering them: the
// meters' history since installation, which sets their index registers.
func (m *Model) catchUp(d localday.Day) {
	for m.next.Before(d) {
		m.accumulate(m.newDay(m.next), false)
		m.next = m.next.AddDays(1)
	}
}

// Deliver computes day d for every meter and returns what the head-end
// delivers for it, per concentrator (index of the registry's
// concentrators): each meter's whole day, index registers stamped at the
// midnight that closes the day and the load curve where a consent allows.
// Days are delivered in order; a day before the model's position is refused.
func (m *Model) Deliver(d localday.Day) ([][]prompb.TimeSeries, error) {
	if d.Before(m.next) {
		return nil, fmt.Errorf("day %s already delivered (next is %s)", d, m.next)
	}
	m.catchUp(d)
	out := m.accumulate(m.newDay(d), true)
	m.next = d.AddDays(1)
	return out, nil
}

// CollectionTime is when concentrator c (index) delivers day d: during
// the night after it, concentrators one after the other from 02:00.
func (m *Model) CollectionTime(c int, d localday.Day) time.Time {
	return d.End().Add(2*time.Hour + time.Duration(c)*4*time.Minute)
}

// Readings are concentrator c's state once day d is collected, stamped at
// "at", with the time of its last collection.
func (m *Model) Readings(c int, d localday.Day, at, collected time.Time) []prompb.TimeSeries {
	installed, reconciled := 0, 0
	for _, i := range m.byConc[c] {
		if m.meters[i].m.ActiveOn(d) {
			installed++
			if !m.meters[i].reconcile.After(d) {
				reconciled++
			}
		}
	}
	ms := at.UnixMilli()
	ls := m.concLab[c]
	vals := []float64{float64(installed), float64(reconciled), float64(collected.Unix()), 1}
	out := make([]prompb.TimeSeries, len(vals))
	for k, v := range vals {
		out[k] = prompb.TimeSeries{Labels: ls[k], Samples: []prompb.Sample{{Timestamp: ms, Value: v}}}
	}
	return out
}
