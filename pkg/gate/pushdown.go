package gate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Pushdown is the Prometheus-compatible query API of the engine that holds
// the data (storage.engine: remote). With it, the gate no longer computes
// daily energy, set sizes, Venn cell counts, sums, maxima and quartiles
// itself: it writes PromQL that has the engine compute exactly those
// figures over the registry's members, and applies its checks (thresholds,
// cells, dominance, rounding) to what comes back. Everything the gate
// decides is still decided by the gate; only the arithmetic moves.
type Pushdown interface {
	// Query is an instant query (/api/v1/query).
	Query(ctx context.Context, query string, ts time.Time) (model.Vector, error)
	// QueryRange is a range query (/api/v1/query_range).
	QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (model.Matrix, error)
	// RangeLeftOpen reports whether the engine's range selectors leave out
	// a sample stamped exactly at the start of their window (Prometheus 3,
	// VictoriaMetrics) or keep it (Prometheus 2, and the Mimir and Thanos
	// versions built on it): the readings at a midnight must be the samples
	// in (M−tolerance, M] whichever the engine.
	RangeLeftOpen(ctx context.Context) (bool, error)
	// Raw reads raw samples through the same query API: consented callers
	// receive individual load curves, which are the output itself.
	Raw() storage.Queryable
}

// figureLabel tags each figure of a combined query; it cannot clash with
// the labels of an aggregate without grouping, which has none.
const figureLabel = "metergate_figure"

// pushdown evaluates the figures of a plan at the engine.
type pushdown struct {
	api Pushdown
	tol int64 // ms; a reading at M is the last sample in (M−tol, M]

	mu     sync.Mutex
	window string // the range of a reading, once the engine's semantics are known
}

func newPushdown(api Pushdown, tolerance time.Duration) *pushdown {
	return &pushdown{api: api, tol: max(tolerance.Milliseconds(), 1)}
}

// readingWindow is the range selector duration that holds exactly the
// samples in (M−tol, M] when evaluated at M: tol on engines that leave out
// the left bound, tol−1ms on those that keep it.
func (pd *pushdown) readingWindow(ctx context.Context) (string, error) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if pd.window != "" {
		return pd.window, nil
	}
	open, err := pd.api.RangeLeftOpen(ctx)
	if err != nil {
		return "", fmt.Errorf("asking the engine how it bounds range selectors: %w", err)
	}
	w := pd.tol
	if !open {
		w--
	}
	if w <= 0 {
		return "", fmt.Errorf("a reading tolerance of %dms cannot be expressed on this engine", pd.tol)
	}
	pd.window = strconv.FormatInt(w, 10) + "ms"
	return pd.window, nil
}

// alternation is a regular expression matching exactly the given RMPs (a
// literal alternation, which Prometheus and VictoriaMetrics both turn into
// a set lookup rather than a regex scan).
func alternation(prms []string) string {
	q := make([]string, len(prms))
	for i, p := range prms {
		q[i] = regexp.QuoteMeta(p)
	}
	slices.Sort(q)
	return strings.Join(q, "|")
}

// dailyExpr is readDaily in PromQL: evaluated at the local midnight M
// closing a day of the given length, it yields one series per RMP of re
// (labelled rmp only) whose value is the day's energy from index register
// src. A reading at a midnight is the last sample in the window ending
// there; an RMP whose series disagree about a reading (max ≠ min over its
// series) has none; a day whose closing index is below its opening one
// (meter replaced) or whose readings are missing yields nothing: absent,
// never zero. The offset is the day's own length, so 23- and 25-hour days
// are read between their true midnights.
//
// single says that no RMP of re has more than one series with a reading
// at either midnight (multiSeriesExpr found none): then no two series can
// disagree, and each reading is the RMP's only one, without the max = min
// check, which halves what the engine selects.
func dailyExpr(src, re, window string, length time.Duration, single bool) string {
	reading := func(offset string) string {
		last := lastExpr(src, re, window, offset)
		if single {
			return fmt.Sprintf("max by (%s) (%s)", catalogue.LabelRMP, last)
		}
		return fmt.Sprintf("(max by (%s) (%s) == min by (%s) (%s))", catalogue.LabelRMP, last, catalogue.LabelRMP, last)
	}
	return fmt.Sprintf("((%s - %s) >= 0)", reading(""), reading(dayOffset(length)))
}

// multiSeriesExpr yields the RMPs of re that have more than one series
// with a reading at one of the midnights of the day closing at the
// evaluation time: the only ones whose series can disagree.
func multiSeriesExpr(src, re, window string, length time.Duration) string {
	several := func(offset string) string {
		return fmt.Sprintf("(count by (%s) (%s) > 1)", catalogue.LabelRMP, lastExpr(src, re, window, offset))
	}
	return several("") + " or " + several(dayOffset(length))
}

// lastExpr is the readings of index register src of the RMPs of re at
// the midnight offset before the evaluation time, one per series.
func lastExpr(src, re, window, offset string) string {
	sel := fmt.Sprintf(`{__name__=%s,%s=~%s}`, strconv.Quote(src), catalogue.LabelRMP, strconv.Quote(re))
	return fmt.Sprintf("last_over_time(%s[%s]%s)", sel, window, offset)
}

func dayOffset(length time.Duration) string {
	return " offset " + strconv.FormatInt(length.Milliseconds(), 10) + "ms"
}

// tagged labels the single series of an aggregate without grouping, so
// that several figures travel in one query joined by "or".
func tagged(expr, tag string) string {
	return fmt.Sprintf(`label_replace(%s, %q, %q, "", "")`, expr, figureLabel, tag)
}

// dayRun is a run of evaluated days the engine can answer with one range
// query: closing midnights evenly spaced, days of one length and the same
// members, groups and cells.
type dayRun struct {
	first, n int // indexes into the evaluated days
	start    time.Time
	step     time.Duration
	length   time.Duration
}

func (r dayRun) end() time.Time { return r.start.Add(time.Duration(r.n-1) * r.step) }

// runs cuts days (increasing) into runs; same(i, j) tells whether days i
// and j have the same members, groups and cells.
func runs(days []localday.Day, same func(i, j int) bool) []dayRun {
	var out []dayRun
	for i, d := range days {
		if len(out) > 0 {
			r := &out[len(out)-1]
			step := d.End().Sub(days[i-1].End())
			if d.Length() == r.length && same(r.first, i) && (r.n == 1 || step == r.step) {
				r.step = step
				r.n++
				continue
			}
		}
		out = append(out, dayRun{first: i, n: 1, start: d.End(), length: d.Length()})
	}
	return out
}

// eval runs one query over a run and returns, per series, its values by
// position in the run. Every timestamp must be one of the run's.
func (pd *pushdown) eval(ctx context.Context, q string, r dayRun) ([]model.Metric, []map[int]float64, error) {
	var metrics []model.Metric
	var values []map[int]float64
	if r.n == 1 {
		v, err := pd.api.Query(ctx, q, r.start)
		if err != nil {
			return nil, nil, fmt.Errorf("engine query at %s: %w", r.start.Format(time.RFC3339), err)
		}
		for _, s := range v {
			metrics = append(metrics, s.Metric)
			values = append(values, map[int]float64{0: float64(s.Value)})
		}
		return metrics, values, nil
	}
	m, err := pd.api.QueryRange(ctx, q, r.start, r.end(), r.step)
	if err != nil {
		return nil, nil, fmt.Errorf("engine range query from %s: %w", r.start.Format(time.RFC3339), err)
	}
	start := r.start.UnixMilli()
	step := r.step.Milliseconds()
	for _, s := range m {
		vals := map[int]float64{}
		for _, p := range s.Values {
			off := int64(p.Timestamp) - start
			if off < 0 || off%step != 0 || off/step >= int64(r.n) {
				return nil, nil, fmt.Errorf("engine answered a point at %d outside the evaluated midnights", p.Timestamp)
			}
			vals[int(off/step)] = float64(p.Value)
		}
		metrics = append(metrics, s.Metric)
		values = append(values, vals)
	}
	return metrics, values, nil
}

// pushedGroup is one group of a leaf on one day: its members by Venn cell
// (from the registry), and the figures the engine computed over those of
// them that contributed.
type pushedGroup struct {
	lbls  labels.Labels
	key   string
	cells map[int][]string // cell id (−1: in no cell) → registered members, sorted

	n       int         // contributing RMPs
	counts  map[int]int // contributing RMPs per cell
	sum     float64
	largest float64
	q       float64
	has     map[string]bool // the figures the engine answered: sum, max, q
}

// smallCell reports whether some cell holds some but fewer than t
// contributors, as smallCell does from the RMPs themselves.
func (g *pushedGroup) smallCell(t int) bool {
	for _, n := range g.counts {
		if n > 0 && n < t {
			return true
		}
	}
	return false
}

// pushedLeaves has the engine compute, for every leaf of a plan and every
// evaluated day, the figures of each group: by leaf, by day, the groups
// sorted by key. Groups without a contributor are left out, as the gate
// leaves them out when it computes from raw samples.
func (g *Gate) pushedLeaves(ctx context.Context, reg *registry.Registry, audience registry.Audience, leaves []*leaf, days []localday.Day) (map[*leaf][][]*pushedGroup, error) {
	window, err := g.push.readingWindow(ctx)
	if err != nil {
		return nil, err
	}
	out := map[*leaf][][]*pushedGroup{}
	for _, l := range leaves {
		if _, done := out[l]; done {
			continue
		}
		byDay, err := g.pushLeaf(ctx, reg, audience, l, days, window)
		if err != nil {
			return nil, err
		}
		out[l] = byDay
	}
	return out, nil
}

func (g *Gate) pushLeaf(ctx context.Context, reg *registry.Registry, audience registry.Audience, l *leaf, days []localday.Day, window string) ([][]*pushedGroup, error) {
	rc := cacheOf(ctx, reg)
	fam := family{audience, l.metric.Flow, l.form}
	// The registry's side, day by day: who is a member, in which group and
	// in which cell.
	groups := make([][]*pushedGroup, len(days))
	sigs := make([]string, len(days)) // what the groups of each day are made of
	for i, d := range days {
		p, ok := reg.Perimeter(l.perimeter, d)
		if !ok {
			continue
		}
		cells := g.cells(reg, fam, d)
		e := &dayEval{reg: reg, cache: rc, day: d}
		byKey := map[string]*pushedGroup{}
		for _, prm := range members(rc, reg, p, d) {
			lbls, k := e.groupOf(prm, l.by)
			gr := byKey[k]
			if gr == nil {
				gr = &pushedGroup{lbls: lbls, key: k, cells: map[int][]string{}, counts: map[int]int{}}
				byKey[k] = gr
				groups[i] = append(groups[i], gr)
			}
			id, ok := cells.of[prm]
			if !ok {
				id = -1
			}
			gr.cells[id] = append(gr.cells[id], prm)
		}
		slices.SortFunc(groups[i], func(a, b *pushedGroup) int { return strings.Compare(a.key, b.key) })
		// A digest, not the text: a year of days over a large perimeter
		// would otherwise hold every member list in memory at once.
		sig := sha256.New()
		for _, gr := range groups[i] {
			fmt.Fprintf(sig, "%q", gr.key)
			for _, id := range sortedCells(gr.cells) {
				fmt.Fprintf(sig, "|%d:%s", id, alternation(gr.cells[id]))
			}
			sig.Write([]byte{'\n'})
		}
		sigs[i] = string(sig.Sum(nil))
	}
	// The engine's side, one query per run of days with the same groups;
	// runs (a year has a few, cut at the clock changes) are asked at once,
	// a few at a time.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		slots = make(chan struct{}, runsInFlight)
	)
	for _, r := range runs(days, func(i, j int) bool { return sigs[i] == sigs[j] }) {
		gs := groups[r.first]
		if len(gs) == 0 {
			continue
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			byDay, err := g.pushRun(ctx, l, r, gs, window, days)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			copy(groups[r.first:r.first+r.n], byDay) // runs are disjoint
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return groups, nil
}

// runsInFlight bounds the runs of one aggregate asked of the engine at once.
const runsInFlight = 4

// pushRun asks the engine the figures of leaf l's groups gs over run r,
// and returns the groups of each day of the run with their figures.
func (g *Gate) pushRun(ctx context.Context, l *leaf, r dayRun, gs []*pushedGroup, window string, days []localday.Day) ([][]*pushedGroup, error) {
	// Most runs have one series per RMP: ask first, and leave out the
	// agreement check when so.
	var members []string
	for _, gr := range gs {
		for _, prms := range gr.cells {
			members = append(members, prms...)
		}
	}
	several, _, err := g.push.eval(ctx, multiSeriesExpr(l.metric.DerivedFrom, alternation(members), window, r.length), r)
	if err != nil {
		return nil, fmt.Errorf("%s over %s: %w", l.metric.Name, l.perimeter, err)
	}
	single := len(several) == 0
	var parts []string
	for gi, gr := range gs {
		var all []string
		for _, id := range sortedCells(gr.cells) {
			prms := gr.cells[id]
			all = append(all, prms...)
			parts = append(parts, tagged("count("+dailyExpr(l.metric.DerivedFrom, alternation(prms), window, r.length, single)+")", fmt.Sprintf("%d/n/%d", gi, id)))
		}
		daily := dailyExpr(l.metric.DerivedFrom, alternation(all), window, r.length, single)
		switch l.op {
		case parser.SUM:
			parts = append(parts,
				tagged("sum("+daily+")", fmt.Sprintf("%d/sum", gi)),
				tagged("max("+daily+")", fmt.Sprintf("%d/max", gi)))
		case parser.QUANTILE:
			parts = append(parts, tagged(fmt.Sprintf("quantile(%s, %s)", strconv.FormatFloat(l.q, 'g', -1, 64), daily), fmt.Sprintf("%d/q", gi)))
		default:
			return nil, errors.New("gate: a leaf without aggregation reached the aggregate path")
		}
	}
	metrics, values, err := g.push.eval(ctx, strings.Join(parts, " or "), r)
	if err != nil {
		return nil, fmt.Errorf("%s over %s: %w", l.metric.Name, l.perimeter, err)
	}
	// Every day of the run gets its own copy of the groups.
	out := make([][]*pushedGroup, r.n)
	for k := range r.n {
		day := cloneGroups(gs)
		for m, metric := range metrics {
			v, ok := values[m][k]
			if !ok {
				continue
			}
			if err := setFigure(day, string(metric[figureLabel]), v); err != nil {
				return nil, err
			}
		}
		day = slices.DeleteFunc(day, func(gr *pushedGroup) bool { return gr.n == 0 })
		// A group with contributors has every figure its aggregate needs:
		// a missing maximum must not pass the dominance check.
		for _, gr := range day {
			for _, f := range needed(l.op) {
				if !gr.has[f] {
					return nil, fmt.Errorf("%s over %s on %s: the engine counted %d contributors but answered no %s", l.metric.Name, l.perimeter, days[r.first+k], gr.n, f)
				}
			}
		}
		out[k] = day
	}
	return out, nil
}

// needed are the figures an aggregate needs besides the counts.
func needed(op parser.ItemType) []string {
	if op == parser.SUM {
		return []string{"sum", "max"}
	}
	return []string{"q"}
}

func sortedCells(m map[int][]string) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func cloneGroups(gs []*pushedGroup) []*pushedGroup {
	out := make([]*pushedGroup, len(gs))
	for i, g := range gs {
		out[i] = &pushedGroup{lbls: g.lbls, key: g.key, cells: g.cells, counts: map[int]int{}, has: map[string]bool{}}
	}
	return out
}

// setFigure stores one figure the engine answered, by its tag.
func setFigure(gs []*pushedGroup, tag string, v float64) error {
	parts := strings.Split(tag, "/")
	gi, err := strconv.Atoi(parts[0])
	if err != nil || gi < 0 || gi >= len(gs) || len(parts) < 2 {
		return fmt.Errorf("engine answered an unknown figure %q", tag)
	}
	gr := gs[gi]
	switch {
	case parts[1] == "n" && len(parts) == 3:
		id, err := strconv.Atoi(parts[2])
		if err != nil || v != float64(int(v)) || v < 0 {
			return fmt.Errorf("engine answered a count %v for %q", v, tag)
		}
		gr.counts[id] = int(v)
		gr.n += int(v)
	case parts[1] == "sum":
		gr.sum = v
	case parts[1] == "max":
		gr.largest = v
	case parts[1] == "q":
		gr.q = v
	default:
		return fmt.Errorf("engine answered an unknown figure %q", tag)
	}
	gr.has[parts[1]] = true
	return nil
}

// daily has the engine compute the daily energy of each of prms on each
// day: the consented path, whose output is the individual values.
func (pd *pushdown) daily(ctx context.Context, src string, days []localday.Day, prms []string) (dailyValues, error) {
	out := make(dailyValues, len(days))
	for _, d := range days {
		out[d] = map[string]float64{}
	}
	if len(prms) == 0 || len(days) == 0 {
		return out, nil
	}
	window, err := pd.readingWindow(ctx)
	if err != nil {
		return nil, err
	}
	re := alternation(prms)
	for _, r := range runs(days, func(int, int) bool { return true }) {
		metrics, values, err := pd.eval(ctx, dailyExpr(src, re, window, r.length, false), r)
		if err != nil {
			return nil, fmt.Errorf("daily %s: %w", src, err)
		}
		for m, metric := range metrics {
			prm := string(metric[catalogue.LabelRMP])
			for k, v := range values[m] {
				out[days[r.first+k]][prm] = v
			}
		}
	}
	return out, nil
}

// pushedGroups are the groups of leaf l on the evaluated day, with the
// engine's figures.
func (e *dayEval) pushedGroups(l *leaf) []*evalGroup {
	gs := e.pushed[l][e.dayIndex]
	out := make([]*evalGroup, len(gs))
	for i, pg := range gs {
		out[i] = &evalGroup{lbls: pg.lbls, key: pg.key, sum: pg.sum, largest: pg.largest, engine: pg}
	}
	return out
}

// size is the number of RMPs that contributed to the group.
func (g *evalGroup) size() int {
	if g.engine != nil {
		return g.engine.n
	}
	return len(g.meters)
}

// small reports whether a Venn cell of partition c holds some but fewer
// than t of the group's contributors. The engine counted them per cell of
// the same partition (the leaf's family on the day).
func (g *evalGroup) small(e *dayEval, c *cells, t int) bool {
	if g.engine != nil {
		return g.engine.smallCell(t)
	}
	return g.smallCell(e.snap, c, t)
}

// quantile is the group's φ-quantile. The engine's quantile aggregation
// (Prometheus and VictoriaMetrics alike) interpolates linearly between the
// closest ranks at φ·(n−1), which is quantileSorted's definition, so both
// paths give the same number before the policy's rounding.
func (g *evalGroup) quantile(q float64) float64 {
	if g.engine != nil {
		return g.engine.q
	}
	return quantileSorted(q, g.sorted)
}
