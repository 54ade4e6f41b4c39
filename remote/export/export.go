// Package export writes a use case's published data as CSV, for the
// platform that ingests metergate's figures and for analysts.
//
// An export is a set of ordinary gate queries (gate.Exec), one per
// perimeter of the use case visible to the caller and per published form,
// evaluated slice by slice (a month of daily data, a day of curves) so that
// memory does not grow with the range. Nothing is read from storage
// directly: an export shows exactly what a Grafana panel shows for the same
// queries, and every slice is in the audit log. The format is in
// docs/exports.md.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// Gate is what an export needs of the privacy gate.
type Gate interface {
	Exec(ctx context.Context, c *config.Caller, req gate.Request) (*gate.Result, error)
	// Now is the gate's clock: D+2 is judged by it.
	Now() time.Time
}

// Batcher is a Gate that can evaluate the queries of a slice together
// (gate.Gate.ExecBatch): each is checked and audited on its own, the
// records written with one sync before any result is returned.
type Batcher interface {
	ExecBatch(ctx context.Context, c *config.Caller, reqs []gate.Request) ([]*gate.Result, error)
}

// Spec says what to export.
type Spec struct {
	UseCase  registry.UseCase
	Nature   catalogue.Nature // Daily or Curve
	From, To localday.Day     // inclusive local days
	// Step of curves: 30 minutes (default) or 10 (renovated buildings).
	Step time.Duration
}

// Limits of one export, so that a request cannot hold the server for hours.
const (
	MaxDailyDays = 3660 // ten years
	MaxCurveDays = 366
	// Slices: daily data is evaluated a month at a time, curves a day at a
	// time. Memory is bounded by one slice of every perimeter.
	dailySlice = 31
	curveSlice = 1
)

// ErrNotPublished is returned when the requested days are not publishable
// yet (D+2).
var ErrNotPublished = errors.New("not published yet: day D is published from the start of day D+2 (Europe/Paris)")

// Exporter writes exports.
type Exporter struct {
	Gate     Gate
	Registry func() *registry.Registry
}

// perimeter is one perimeter of the export and how it is queried.
type perimeter struct {
	name    string
	metric  string
	groupBy []string
	// sums, quartiles: the perimeter publishes the form in every version
	// (registry forms); a form it does not publish is an empty column.
	sums, quartiles bool
}

// Columns of each kind of export.
var (
	aggregateColumns = []string{"horodate", "jour", "perimetre", "groupe", "energie_wh", "energie_q1_wh", "energie_mediane_wh", "energie_q3_wh", "nb_pdl", "masque"}
	dailyColumns     = []string{"horodate", "jour", "perimetre", "pdl", "energie_wh", "masque"}
	curveColumns     = []string{"horodate", "perimetre", "pdl", "puissance_w", "masque"}
)

// Check validates a spec against the caller and the clock before anything
// is written, and returns it with the range cut at D+2. A use case the
// caller may not read, or that does not exist, is gate.ErrRefused, the
// same answer, so that probing tells nothing.
func (e *Exporter) Check(c *config.Caller, s Spec) (Spec, error) {
	if c == nil || c.Audience == registry.Operator || !s.UseCase.Valid() {
		return s, gate.ErrRefused
	}
	if s.To.Before(s.From) {
		return s, fmt.Errorf("the range ends (%s) before it starts (%s)", s.To, s.From)
	}
	switch s.Nature {
	case catalogue.Daily:
		if s.To.Sub(s.From)+1 > MaxDailyDays {
			return s, fmt.Errorf("at most %d days of daily data per export", MaxDailyDays)
		}
	case catalogue.Curve:
		if c.Audience != registry.Consented {
			return s, gate.ErrRefused // curves need consent
		}
		if s.Step == 0 {
			s.Step = 30 * time.Minute
		}
		if s.Step != 30*time.Minute && s.Step != 10*time.Minute {
			return s, errors.New("the step of load curves is 30m or 10m")
		}
		if s.To.Sub(s.From)+1 > MaxCurveDays {
			return s, fmt.Errorf("at most %d days of load curves per export", MaxCurveDays)
		}
	default:
		return s, fmt.Errorf("nature must be daily or curve, not %q", s.Nature)
	}
	if len(e.perimeters(c, s)) == 0 {
		return s, gate.ErrRefused
	}
	last := localday.LastPublishable(e.Gate.Now())
	if s.From.After(last) {
		return s, ErrNotPublished
	}
	if s.To.After(last) {
		s.To = last
	}
	return s, nil
}

// perimeters lists the perimeters of the use case the caller may read,
// sorted by name, with the metric each is exported with. Only perimeter
// names and flows come from the registry, which any caller of the audience
// can address anyway; members and consents are never read here.
func (e *Exporter) perimeters(c *config.Caller, s Spec) []perimeter {
	reg := e.Registry()
	if reg == nil {
		return nil
	}
	var out []perimeter
	for _, name := range reg.PerimeterNames() {
		var versions []*registry.Perimeter
		for i := range reg.Perimeters {
			if reg.Perimeters[i].Name == name {
				versions = append(versions, &reg.Perimeters[i])
			}
		}
		v := versions[0]
		if v.UseCase != s.UseCase {
			continue
		}
		ok := true
		for _, v := range versions {
			ok = ok && gate.MayAddress(v, c)
		}
		if !ok {
			continue
		}
		p := perimeter{name: name, metric: metricOf(v, s.Nature), sums: true, quartiles: true}
		for _, v := range versions {
			p.sums = p.sums && v.Publishes(string(policy.Sum))
			p.quartiles = p.quartiles && v.Publishes(string(policy.Quartile))
		}
		if p.metric == "" {
			continue
		}
		if c.Audience != registry.Consented {
			p.groupBy = v.GroupBy
		}
		out = append(out, p)
	}
	return out
}

func metricOf(v *registry.Perimeter, n catalogue.Nature) string {
	switch {
	case n == catalogue.Daily && v.Flow == string(catalogue.Consumption):
		return catalogue.DailyConsumption
	case n == catalogue.Daily:
		return catalogue.DailyInjection
	case len(v.Select.Stations) > 0:
		return catalogue.CurveEVCharge
	case v.Flow == string(catalogue.Consumption):
		return catalogue.CurveConsumption
	default:
		return catalogue.CurveInjection
	}
}

// Write writes the export of a checked spec to w, slice by slice, and
// returns the number of data rows. It stops at the first error, including
// the end of ctx (a client that went away).
func (e *Exporter) Write(ctx context.Context, w io.Writer, c *config.Caller, s Spec, f Format) (int, error) {
	ps := e.perimeters(c, s)
	rw, err := newRowWriter(w, f)
	if err != nil {
		return 0, err
	}
	sl := &slicer{e: e, c: c, s: s, ps: ps, seen: map[string]labels.Labels{}}
	switch {
	case s.Nature == catalogue.Curve:
		err = rw.write(curveColumns)
	case c.Audience == registry.Consented:
		err = rw.write(dailyColumns)
	default:
		err = rw.write(aggregateColumns)
	}
	if err != nil {
		return 0, err
	}
	rw.rows = 0
	size := dailySlice
	if s.Nature == catalogue.Curve {
		size = curveSlice
	}
	var spans [][2]localday.Day
	for from := s.From; !from.After(s.To); from = from.AddDays(size) {
		to := from.AddDays(size - 1)
		if to.After(s.To) {
			to = s.To
		}
		spans = append(spans, [2]localday.Day{from, to})
	}
	qs := sl.queries()
	// With a gate that answers a slice in one batch, two slices are
	// evaluated at once (the next one while this one is finished and
	// written): reading storage and evaluating the policy use both cores
	// instead of waiting for each other. At most three slices are in memory,
	// and each slice's rows still leave only once its own audit records are
	// durable, in order.
	depth := 1
	if _, ok := e.Gate.(Batcher); ok {
		depth = 2
	}
	// The slices read the registers block by block, each storage block
	// once for the whole export (gate.WithSlicedRead).
	ctx, cancel := context.WithCancel(gate.WithSlicedRead(ctx))
	var queue []chan answer
	defer func() {
		cancel()
		for _, ch := range queue {
			<-ch // no gate work outlives the export
		}
	}()
	next := 0
	for i, r := range spans {
		if err := ctx.Err(); err != nil {
			return rw.rows, err
		}
		for ; next < len(spans) && next < i+depth; next++ {
			ch := make(chan answer, 1)
			go func(r [2]localday.Day) { ch <- sl.evaluate(ctx, qs, r) }(spans[next])
			queue = append(queue, ch)
		}
		a := <-queue[0]
		queue = queue[1:]
		if a.err != nil {
			return rw.rows, fmt.Errorf("exporting %s to %s: %w", r[0], r[1], a.err)
		}
		if err := sl.write(rw, r[0], r[1], qs, a.res); err != nil {
			return rw.rows, fmt.Errorf("exporting %s to %s: %w", r[0], r[1], err)
		}
		if err := rw.flush(); err != nil {
			return rw.rows, fmt.Errorf("writing: %w", err)
		}
		if fl, ok := w.(interface{ Flush() error }); ok {
			if err := fl.Flush(); err != nil {
				return rw.rows, fmt.Errorf("writing: %w", err)
			}
		}
	}
	return rw.rows, nil
}

// answer is what the gate said about the queries of one slice.
type answer struct {
	res []*gate.Result
	err error
}

// evaluate asks the gate the queries of one slice. The queries of a slice
// read the same registers and members: the gate reads them once. A new
// cache per slice keeps memory to one slice, whatever the range.
func (sl *slicer) evaluate(ctx context.Context, qs []query, r [2]localday.Day) answer {
	res, err := sl.exec(gate.WithReadCache(ctx), qs, r[0], r[1])
	return answer{res, err}
}

// slicer evaluates one slice of days at a time. seen remembers the series
// (groups, RMPs) met so far, so that a series absent at some step of a
// later slice gets a row that says so rather than no row.
type slicer struct {
	e    *Exporter
	c    *config.Caller
	s    Spec
	ps   []perimeter
	seen map[string]labels.Labels // perimeter + "\xff" + series key → labels
}

// cell is one value of a row, or why it has none.
type cell struct {
	v      float64
	set    int
	ok     bool
	hidden bool
}

// row is every value of one (time, perimeter, series).
type row struct {
	t         int64
	perimeter string
	key       string
	lbls      labels.Labels
	cells     []cell // by form
}

func (sl *slicer) request(query string, from, to localday.Day) gate.Request {
	whole := [2]time.Time{sl.s.From.Start(), sl.s.To.End()}
	if sl.s.Nature == catalogue.Curve {
		return gate.Request{Query: query, Start: from.Start().Add(sl.s.Step), End: to.End(), Step: sl.s.Step, Whole: whole}
	}
	// Daily values are stamped at the local midnight that closes the day.
	return gate.Request{Query: query, Start: from.End(), End: to.End(), Step: 24 * time.Hour, Whole: whole}
}

// forms are the queries of one perimeter and one grouping: the sum and the
// three quartiles for aggregates, the selector itself with consent. A form
// the perimeter does not publish is "", not asked: its column stays empty.
func (sl *slicer) forms(p perimeter, by []string) []string {
	sel := fmt.Sprintf("%s{%s=%q}", p.metric, gate.LabelPerimeter, p.name)
	if sl.c.Audience == registry.Consented {
		return []string{sel}
	}
	grouping := ""
	if len(by) > 0 {
		grouping = " by (" + joinComma(by) + ")"
	}
	forms := make([]string, 4)
	if p.sums {
		forms[0] = "sum" + grouping + " (" + sel + ")"
	}
	if p.quartiles {
		for i, q := range []string{"0.25", "0.5", "0.75"} {
			forms[1+i] = "quantile" + grouping + " (" + q + ", " + sel + ")"
		}
	}
	return forms
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// query is one gate query of a slice: a form of a perimeter and grouping.
type query struct {
	p      perimeter
	by     []string
	form   int // index in forms
	nforms int
	q      string
}

// exec runs the queries of a slice: in one batch when the gate can (one
// audit sync for the slice, and nothing of the slice is released before
// its records are durable), else one by one.
func (sl *slicer) exec(ctx context.Context, qs []query, from, to localday.Day) ([]*gate.Result, error) {
	if b, ok := sl.e.Gate.(Batcher); ok {
		reqs := make([]gate.Request, len(qs))
		for i, q := range qs {
			reqs[i] = sl.request(q.q, from, to)
		}
		res, err := b.ExecBatch(ctx, sl.c, reqs)
		if err != nil {
			if len(res) < len(qs) {
				return nil, fmt.Errorf("query %s: %w", qs[len(res)].q, err)
			}
			return nil, err
		}
		if len(res) != len(qs) {
			return nil, fmt.Errorf("the gate answered %d of %d queries", len(res), len(qs))
		}
		return res, nil
	}
	out := make([]*gate.Result, 0, len(qs))
	for _, q := range qs {
		res, err := sl.e.Gate.Exec(ctx, sl.c, sl.request(q.q, from, to))
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", q.q, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// queries lists the gate queries of every slice: every form of every
// perimeter and grouping.
func (sl *slicer) queries() []query {
	var qs []query
	for _, p := range sl.ps {
		groupings := [][]string{nil}
		if len(p.groupBy) > 0 {
			groupings = append(groupings, p.groupBy)
		}
		for _, by := range groupings {
			forms := sl.forms(p, by)
			for fi, q := range forms {
				if q == "" {
					continue // a form the perimeter does not publish
				}
				qs = append(qs, query{p: p, by: by, form: fi, nforms: len(forms), q: q})
			}
		}
	}
	return qs
}

// write turns the answers of one slice into rows and writes them.
func (sl *slicer) write(rw *rowWriter, from, to localday.Day, qs []query, results []*gate.Result) error {
	rows := map[string]*row{} // t, perimeter, key
	for i, q := range qs {
		p, by, fi, res := q.p, q.by, q.form, results[i]
		put := func(t int64, lbls labels.Labels, c cell) {
			lbls = seriesLabels(lbls)
			key := lbls.String()
			if len(by) > 0 && len(lbls.Map()) == 0 {
				return // a grouping that yielded no group label: the total row has it
			}
			rk := strconv.FormatInt(t, 10) + "\xff" + p.name + "\xff" + key
			r := rows[rk]
			if r == nil {
				r = &row{t: t, perimeter: p.name, key: key, lbls: lbls, cells: make([]cell, q.nforms)}
				rows[rk] = r
			}
			r.cells[fi] = c
			sl.seen[p.name+"\xff"+key] = lbls
		}
		if sl.c.Audience != registry.Consented {
			for _, pt := range res.Points {
				put(pt.T, pt.Metric, cell{hidden: pt.Hidden, set: pt.Set, ok: !pt.Hidden})
			}
			fillValues(res, func(t int64, lbls labels.Labels, v float64) {
				rk := strconv.FormatInt(t, 10) + "\xff" + p.name + "\xff" + seriesLabels(lbls).String()
				if r := rows[rk]; r != nil {
					r.cells[fi].v = v
				}
			})
			continue
		}
		fillValues(res, func(t int64, lbls labels.Labels, v float64) {
			put(t, lbls, cell{v: v, ok: true})
		})
	}
	// Every step of the slice, for every series seen so far: a missing
	// point is a row that says so.
	times := sl.steps(from, to)
	for _, p := range sl.ps {
		for k, lbls := range sl.seen {
			name, key, _ := cut(k)
			if name != p.name {
				continue
			}
			for _, t := range times {
				if !sl.perimeterValid(p.name, t) {
					continue
				}
				rk := strconv.FormatInt(t, 10) + "\xff" + p.name + "\xff" + key
				if rows[rk] == nil {
					n := 4
					if sl.c.Audience == registry.Consented {
						n = 1
					}
					rows[rk] = &row{t: t, perimeter: p.name, key: key, lbls: lbls, cells: make([]cell, n)}
				}
			}
		}
		// The total row of an aggregate exists every day the perimeter does.
		if sl.c.Audience != registry.Consented {
			for _, t := range times {
				rk := strconv.FormatInt(t, 10) + "\xff" + p.name + "\xff{}"
				if rows[rk] == nil && sl.perimeterValid(p.name, t) {
					rows[rk] = &row{t: t, perimeter: p.name, key: "{}", lbls: labels.EmptyLabels(), cells: make([]cell, 4)}
				}
			}
		}
	}
	sorted := make([]*row, 0, len(rows))
	for _, r := range rows {
		sorted = append(sorted, r)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.t != b.t {
			return a.t < b.t
		}
		if a.perimeter != b.perimeter {
			return a.perimeter < b.perimeter
		}
		return labels.Compare(a.lbls, b.lbls) < 0
	})
	for _, r := range sorted {
		if err := rw.write(sl.record(r)); err != nil {
			return err
		}
	}
	return nil
}

func cut(k string) (string, string, bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == '\xff' {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

// perimeterValid reports whether some version of the perimeter applies to
// the day of a step (the day a daily value closes, the day a curve point
// ends in).
func (sl *slicer) perimeterValid(name string, t int64) bool {
	reg := sl.e.Registry()
	_, ok := reg.Perimeter(name, sl.dayOf(t))
	return ok
}

func (sl *slicer) dayOf(t int64) localday.Day {
	at := timestamp.Time(t)
	if sl.s.Nature == catalogue.Daily {
		return localday.Of(at).AddDays(-1)
	}
	return localday.Of(at.Add(-time.Millisecond)) // a point ending at midnight belongs to the day before
}

// steps lists the timestamps of the slice, as the gate stamps them.
func (sl *slicer) steps(from, to localday.Day) []int64 {
	var out []int64
	if sl.s.Nature == catalogue.Daily {
		for d := from; !d.After(to); d = d.AddDays(1) {
			out = append(out, timestamp.FromTime(d.End()))
		}
		return out
	}
	for t := from.Start().Add(sl.s.Step); !t.After(to.End()); t = t.Add(sl.s.Step) {
		out = append(out, timestamp.FromTime(t))
	}
	return out
}

// seriesLabels keeps what identifies a row: the group labels of an
// aggregate, the RMP of an individual series.
func seriesLabels(l labels.Labels) labels.Labels {
	if rmp := l.Get(catalogue.LabelRMP); rmp != "" {
		return labels.FromStrings(catalogue.LabelRMP, rmp)
	}
	return l.DropMetricName()
}

func fillValues(res *gate.Result, f func(int64, labels.Labels, float64)) {
	switch v := res.Value.(type) {
	case promql.Matrix:
		for _, s := range v {
			for _, p := range s.Floats {
				f(p.T, s.Metric, p.F)
			}
		}
	case promql.Vector:
		for _, s := range v {
			f(s.T, s.Metric, s.F)
		}
	}
}

func (sl *slicer) record(r *row) []string {
	at := timestamp.Time(r.t)
	hidden, published := false, false
	for _, c := range r.cells {
		hidden = hidden || c.hidden
		published = published || c.ok
	}
	mask := ""
	switch {
	case hidden:
		mask = MaskHidden
	case !published:
		mask = MaskAbsent
	}
	value := func(c cell) string {
		if !c.ok {
			return ""
		}
		return number(c.v)
	}
	if sl.s.Nature == catalogue.Curve {
		return []string{Horodate(at), Text(r.perimeter), Text(r.lbls.Get(catalogue.LabelRMP)), value(r.cells[0]), mask}
	}
	day := sl.dayOf(r.t).String()
	if sl.c.Audience == registry.Consented {
		return []string{Horodate(at), day, Text(r.perimeter), Text(r.lbls.Get(catalogue.LabelRMP)), value(r.cells[0]), mask}
	}
	set := ""
	for _, c := range r.cells {
		if c.ok && c.set > 0 {
			set = strconv.Itoa(c.set)
			break
		}
	}
	group := ""
	r.lbls.Range(func(l labels.Label) {
		if group != "" {
			group += ","
		}
		group += l.Name + "=" + l.Value
	})
	return []string{Horodate(at), day, Text(r.perimeter), Text(group),
		value(r.cells[0]), value(r.cells[1]), value(r.cells[2]), value(r.cells[3]), set, mask}
}
