// Package gate is metergate's privacy gate: every read of meter data goes
// through it. It parses the PromQL a caller sends, refuses anything that is
// not an allow-listed form for the caller's audience (POLICY.md, via
// pkg/policy), evaluates what it allows with the sets counted from the data,
// hides points that would identify fewer meters than the policy requires,
// and writes every decision to the audit log.
//
// Three paths, by the caller's audience (from its identity, never from the
// request):
//   - public and restricted: sums and quartiles of derived daily energy over
//     registered perimeters, evaluated by the gate itself per local day;
//   - consented: Prometheus's engine over a storage that only holds the
//     consented RMPs of the addressed perimeter;
//   - operator: raw PromQL, audited.
package gate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// Options configure a Gate.
type Options struct {
	// Registry returns the current registry snapshot (reloads swap it).
	Registry func() *registry.Registry
	// Queryable is the raw storage.
	Queryable storage.Queryable
	// Engine evaluates consented and operator queries; nil builds one.
	Engine *promql.Engine
	// Audit receives every decision; nil disables auditing (tests only).
	Audit *audit.Log
	// Now is the clock of the D+2 rule and of consent; nil is time.Now.
	Now func() time.Time
	// LookbackDelta is how far before a midnight an index reading may be
	// stamped and still count as that midnight's; 0 is 5 minutes.
	LookbackDelta time.Duration
	// Dominance is the share of a sum above which one RMP dominates it and
	// the sum is hidden; 0 is policy.DefaultDominance, negative disables.
	Dominance float64
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Pushdown, when set, is the query API of the engine holding the data:
	// the engine computes daily energies, set sizes, Venn cell counts, sums,
	// maxima and quartiles with PromQL the gate writes from the registry,
	// and the gate applies its checks to them (pushdown.go). Consented
	// individual values are read through it too. nil: the gate computes
	// from raw samples of Queryable.
	Pushdown Pushdown
	// SealedReadBytes bounds the memory of the index readings of sealed
	// storage blocks the gate keeps from one export to the next
	// (sealed.go); 0 is DefaultSealedReadBytes, negative keeps none.
	SealedReadBytes int64
}

// Gate is the privacy gate. It is safe for concurrent use.
type Gate struct {
	o      Options
	parser parser.Parser
	log    *slog.Logger

	mu        sync.Mutex
	cacheReg  *registry.Registry
	cellCache map[string]*cells
	snap      *snapshot // of cacheReg's successor: see snapshotOf
	sealed    *sealedReads
	push      *pushdown // Options.Pushdown; nil: computed here
}

// New checks the options and builds a gate.
func New(o Options) (*Gate, error) {
	if o.Registry == nil || o.Queryable == nil {
		return nil, errors.New("gate: Registry and Queryable are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LookbackDelta <= 0 {
		o.LookbackDelta = 5 * time.Minute
	}
	if o.Dominance == 0 {
		o.Dominance = policy.DefaultDominance
	}
	if o.Dominance > 1 {
		return nil, fmt.Errorf("gate: dominance share %v is above 1", o.Dominance)
	}
	if o.Engine == nil {
		o.Engine = promql.NewEngine(promql.EngineOpts{
			MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: o.LookbackDelta,
			EnableAtModifier: true, EnableNegativeOffset: true,
		})
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	g := &Gate{o: o, parser: parser.NewParser(parser.Options{}), log: o.Logger}
	if o.SealedReadBytes >= 0 {
		g.sealed = newSealedReads(cmp.Or(o.SealedReadBytes, DefaultSealedReadBytes))
	}
	if o.Pushdown != nil {
		g.push = newPushdown(o.Pushdown, o.LookbackDelta)
	}
	return g, nil
}

// Request is one query: an instant query when Step is 0 (Start is the
// evaluation time), a range query otherwise.
type Request struct {
	Query      string
	Start, End time.Time
	Step       time.Duration
	// Whole, when set, is the period of a larger publication this request
	// is one slice of (an export cut into days or months so that its memory
	// stays flat). Consent is then judged over Whole as well as the
	// request's own range, so that the slices publish exactly the RMPs the
	// whole query would. It can only widen the check, never narrow it.
	Whole [2]time.Time
}

// Result is an answer of the gate.
type Result struct {
	Value parser.Value
	// Annotations holds ErrSuppressed when points were hidden, and the
	// engine's own warnings on the consented and operator paths. The HTTP
	// layer shows them as Prometheus API warnings.
	Annotations annotations.Annotations
	// Suppressed counts the hidden points.
	Suppressed int
	// Points describes, on the public and restricted paths only, every
	// point the plan computed, published or hidden, sorted by labels then
	// time: exports need to know which point was hidden (to write a row
	// that says so rather than a gap) and how many RMPs contributed to each
	// published one. Added after Value; nil on the other paths.
	Points []Point
}

// Point describes one point of an aggregate result.
type Point struct {
	Metric labels.Labels
	T      int64 // ms, as in Value
	// Set is the number of RMPs that contributed to a published point of
	// a single aggregate (also after arithmetic with literals). It is 0
	// for a point that combines two aggregates, and for a hidden point:
	// the size of a set too small to publish is never told.
	Set    int
	Hidden bool
}

// Now is the gate's clock (the D+2 rule and consents are judged by it),
// so that callers deciding what is published yet agree with the gate.
func (g *Gate) Now() time.Time { return g.o.Now() }

// Query is an instant query at ts. Hidden points are absent; use Exec to
// also learn that some were hidden.
func (g *Gate) Query(ctx context.Context, c *config.Caller, q string, ts time.Time) (parser.Value, error) {
	r, err := g.Exec(ctx, c, Request{Query: q, Start: ts, End: ts})
	if err != nil {
		return nil, err
	}
	return r.Value, nil
}

// QueryRange is a range query. On daily data it evaluates at each local
// midnight of [start, end] (every n-th one for a step of n days; a step
// under one day means every day).
func (g *Gate) QueryRange(ctx context.Context, c *config.Caller, q string, start, end time.Time, step time.Duration) (parser.Value, error) {
	if step <= 0 {
		return nil, ErrRefused
	}
	r, err := g.Exec(ctx, c, Request{Query: q, Start: start, End: end, Step: step})
	if err != nil {
		return nil, err
	}
	return r.Value, nil
}

// Exec evaluates a request for caller c, or refuses it with ErrRefused.
func (g *Gate) Exec(ctx context.Context, c *config.Caller, req Request) (*Result, error) {
	rs, err := g.ExecBatch(ctx, c, []Request{req})
	if len(rs) == 0 {
		return nil, err
	}
	return rs[0], err
}

// ExecBatch evaluates several requests of one caller, in order, as Exec
// would one by one: each is planned, checked, evaluated and recorded on its
// own, and the first refusal or error stops the batch. The difference is
// the audit log: the records of the batch (up to and including a refused
// one) are written with one sync (audit.Log.AppendBatch) before any result
// is returned, so an export slice pays one sync instead of one per query,
// and still releases nothing whose record is not durable. On success the
// results are one per request; on error they are the results of the
// requests before the failing one (whose records are durable too), and the
// error is what Exec would have returned for it.
func (g *Gate) ExecBatch(ctx context.Context, c *config.Caller, reqs []Request) ([]*Result, error) {
	recs := make([]audit.Record, 0, len(reqs))
	out := make([]*Result, 0, len(reqs))
	var failed error
	for _, req := range reqs {
		if err := ctx.Err(); err != nil && len(recs) > 0 {
			// The caller went away: the requests not started are not
			// evaluated (nor recorded: nothing was decided).
			failed = err
			break
		}
		res, rec, err := g.decide(ctx, c, req)
		recs = append(recs, rec)
		if err != nil {
			failed = err
			break
		}
		out = append(out, res)
	}
	if g.o.Audit != nil {
		if aerr := g.o.Audit.AppendBatch(recs); aerr != nil {
			// No record, no answer.
			g.log.ErrorContext(ctx, "audit log write failed", "err", aerr)
			return nil, ErrUnavailable
		}
	}
	return out, failed
}

// decide evaluates one request and returns its audit record, not yet
// written.
func (g *Gate) decide(ctx context.Context, c *config.Caller, req Request) (*Result, audit.Record, error) {
	now := g.o.Now()
	rec := audit.Record{Time: now, Query: req.Query, Start: req.Start, End: req.End}
	if req.Step > 0 {
		rec.Step = req.Step.String()
	}
	if c != nil {
		rec.Caller, rec.Audience = c.Name, string(c.Audience)
		for _, uc := range c.UseCases {
			rec.UseCases = append(rec.UseCases, string(uc))
		}
	}
	res, err := g.exec(ctx, c, req, now, &rec)
	var ref *refusal
	var perr parser.ParseErrors
	switch {
	case c != nil && c.Audience == registry.Operator && errors.As(err, &perr):
		// An operator may read everything: the parser's message tells
		// nothing it could not see, and helps write the query.
		rec.Decision, rec.Rule, rec.Detail = audit.Refused, ruleParse, err.Error()
		res = nil
	case errors.As(err, &ref):
		rec.Decision, rec.Rule, rec.Detail = audit.Refused, ref.rule, ref.detail
		res, err = nil, ErrRefused
	case err != nil:
		rec.Decision, rec.Rule, rec.Detail = audit.Refused, "error", err.Error()
		res = nil
		if ctx.Err() != nil {
			// The client went away or its deadline passed: not a fault of
			// the gate, and no page for the operator.
			g.log.InfoContext(ctx, "gate evaluation stopped", "caller", rec.Caller, "err", err)
			err = ctx.Err()
		} else {
			g.log.ErrorContext(ctx, "gate evaluation failed", "caller", rec.Caller, "err", err)
			err = unavailable(err)
		}
	default:
		rec.Decision = audit.Allowed
		rec.Rows = rows(res.Value)
	}
	return res, rec, err
}

func (g *Gate) exec(ctx context.Context, c *config.Caller, req Request, now time.Time, rec *audit.Record) (*Result, error) {
	if c == nil {
		return nil, refuse(ruleCaller, "no caller")
	}
	if req.Step < 0 || req.End.Before(req.Start) || (req.Step == 0 && !req.End.Equal(req.Start)) {
		return nil, refuse(ruleParse, "bad time range")
	}
	reg := g.o.Registry()
	if reg == nil {
		return nil, errors.New("no registry loaded")
	}
	if c.Audience == registry.Operator {
		return g.operator(ctx, req)
	}
	expr, err := g.parser.ParseExpr(req.Query)
	if err != nil {
		return nil, refuse(ruleParse, "%v", err)
	}
	p := &planner{reg: reg, caller: c, consented: c.Audience == registry.Consented}
	switch c.Audience {
	case registry.Public, registry.Restricted, registry.Consented:
	default:
		return nil, refuse(ruleCaller, "audience %q may not read", c.Audience)
	}
	root, err := p.plan(expr)
	if err != nil {
		return nil, err
	}
	rec.Perimeters = p.perimeters
	nature, err := p.nature()
	if err != nil {
		return nil, err
	}

	// D+2: nothing stamped after the end of local day today−2.
	limit := localday.LastPublishable(now).End()
	start, end := req.Start, req.End
	if req.Step > 0 && end.After(limit) {
		end = limit // a range reaching past D+2 is cut there
	}
	if end.Before(start) {
		return &Result{Value: emptyValue(req)}, nil
	}
	stmt := &parser.EvalStmt{Expr: expr, Start: start, End: end, Interval: req.Step, LookbackDelta: g.o.LookbackDelta}
	mint, maxt := promql.FindMinMaxTime(stmt)
	if maxt > timestamp.FromTime(limit) {
		return nil, refuse(ruleD2, "reads up to %s, after the end of %s", timestamp.Time(maxt).In(localday.Paris), localday.LastPublishable(now))
	}
	if p.consented {
		return g.consented(ctx, c, reg, p, expr, nature, Request{Query: req.Query, Start: start, End: end, Step: req.Step, Whole: req.Whole}, now, mint, maxt, limit)
	}
	return g.aggregate(ctx, c, reg, p, root, req, start, end, rec)
}

// evalDays lists the evaluations of a request on daily data: the output
// timestamp and the day whose value it carries (the day closed by the
// local midnight at or just before the timestamp, within the lookback).
func (g *Gate) evalDays(req Request, start, end time.Time) ([]time.Time, []localday.Day, error) {
	var ts []time.Time
	var days []localday.Day
	if req.Step == 0 {
		m := localday.Of(start).Start()
		if start.Sub(m) < g.o.LookbackDelta {
			ts, days = append(ts, start), append(days, localday.Of(start).AddDays(-1))
		}
		return ts, days, nil
	}
	n := max(1, int((req.Step+12*time.Hour)/(24*time.Hour)))
	d := localday.Of(start)
	if d.Start().Before(start) {
		d = d.AddDays(1)
	}
	for ; !d.Start().After(end); d = d.AddDays(n) {
		ts, days = append(ts, d.Start()), append(days, d.AddDays(-1))
		if len(ts) > 11000 {
			return nil, nil, refuse(ruleParse, "more than 11000 days")
		}
	}
	return ts, days, nil
}

func (g *Gate) aggregate(ctx context.Context, c *config.Caller, reg *registry.Registry, p *planner, root node, req Request, start, end time.Time, rec *audit.Record) (*Result, error) {
	ts, days, err := g.evalDays(req, start, end)
	if err != nil {
		return nil, err
	}
	snap := g.snapshotOf(reg)
	daily := map[string]*denseDaily{}
	var pushed map[*leaf][][]*pushedGroup
	srcs := sources(p.leaves)
	if g.push != nil {
		// The engine computes the figures: no raw sample is read here.
		if pushed, err = g.pushedLeaves(ctx, reg, c.Audience, p.leaves, days); err != nil {
			return nil, err
		}
		srcs = nil
	}
	for _, src := range srcs {
		v, err := g.readDenseCached(narrowReads(ctx, reg, p.perimeters), snap, src, days)
		if err != nil {
			return nil, err
		}
		daily[src] = v
	}
	dom := g.o.Dominance
	if dom < 0 {
		dom = 0
	}
	res := &Result{}
	series := map[string]*promql.Series{}
	var vector promql.Vector
	for i, d := range days {
		e := &dayEval{g: g, reg: reg, audience: c.Audience, day: d, snap: snap, daily: daily, dominance: dom, cache: cacheOf(ctx, reg), pushed: pushed, dayIndex: i}
		v := e.eval(root)
		rec.SetSizes = append(rec.SetSizes, e.setSizes...)
		rec.Suppressed = append(rec.Suppressed, e.hidden...)
		res.Suppressed += len(e.hidden)
		if e.minSet > 0 && (rec.MinSet == 0 || e.minSet < rec.MinSet) {
			rec.MinSet = e.minSet
		}
		if v.scalar {
			return nil, refuse(ruleForm, "scalar result")
		}
		t := timestamp.FromTime(ts[i])
		for k, pt := range v.points {
			res.Points = append(res.Points, Point{Metric: pt.lbls, T: t, Set: v.sets[k]})
		}
		for _, lbls := range v.hidden {
			res.Points = append(res.Points, Point{Metric: lbls, T: t, Hidden: true})
		}
		for k, pt := range v.points {
			if req.Step == 0 {
				vector = append(vector, promql.Sample{Metric: pt.lbls, T: t, F: pt.v})
				continue
			}
			s := series[k]
			if s == nil {
				s = &promql.Series{Metric: pt.lbls}
				series[k] = s
			}
			s.Floats = append(s.Floats, promql.FPoint{T: t, F: pt.v})
		}
	}
	if len(rec.SetSizes) > 2000 {
		rec.SetSizes = rec.SetSizes[:2000]
	}
	if res.Suppressed > 0 {
		res.Annotations.Add(ErrSuppressed)
	}
	sort.Slice(res.Points, func(i, j int) bool {
		if c := labels.Compare(res.Points[i].Metric, res.Points[j].Metric); c != 0 {
			return c < 0
		}
		return res.Points[i].T < res.Points[j].T
	})
	if req.Step == 0 {
		sort.Slice(vector, func(i, j int) bool { return labels.Compare(vector[i].Metric, vector[j].Metric) < 0 })
		res.Value = vector
		return res, nil
	}
	m := make(promql.Matrix, 0, len(series))
	for _, s := range series {
		m = append(m, *s)
	}
	sort.Sort(m)
	res.Value = m
	return res, nil
}

// consented evaluates with the engine over a storage holding only the
// RMPs whose consent for the perimeter's use case covers [mint, maxt].
func (g *Gate) consented(ctx context.Context, c *config.Caller, reg *registry.Registry, p *planner, expr parser.Expr, nature catalogue.Nature, req Request, now time.Time, mint, maxt int64, limit time.Time) (*Result, error) {
	from, to := timestamp.Time(mint), timestamp.Time(maxt)
	if w := req.Whole; !w[0].IsZero() && !w[1].IsZero() {
		from, to = minTime(from, w[0]), maxTime(to, w[1])
	}
	base := g.o.Queryable
	if g.push != nil {
		// Individual curves are the output itself: read raw, through
		// the engine's query API, for the consented RMPs only.
		base = g.push.api.Raw()
	}
	cq := &consentQueryable{base: base, allowed: map[string]map[string]bool{}, limit: timestamp.FromTime(limit), tolerance: g.o.LookbackDelta, sealed: g.sealed, push: g.push}
	rc := cacheOf(ctx, reg)
	for _, name := range p.perimeters {
		set := map[string]bool{}
		for d := localday.Of(from); !d.After(localday.Of(to)); d = d.AddDays(1) {
			pv, ok := reg.Perimeter(name, d)
			if !ok {
				continue
			}
			for _, prm := range members(rc, reg, pv, d) {
				if !set[prm] && reg.ConsentCovers(prm, pv.UseCase, from, to, now) {
					set[prm] = true
				}
			}
			if d.Sub(localday.Of(from)) > 4000 {
				return nil, refuse(ruleParse, "period too long")
			}
		}
		cq.allowed[name] = set
	}
	res := &Result{}
	if nature == catalogue.Daily && req.Step > 0 {
		// Daily data lives at local midnights: evaluate at each of them
		// (a 24-hour step would drift on 23- and 25-hour days).
		ts, _, err := g.evalDays(req, req.Start, req.End)
		if err != nil {
			return nil, err
		}
		series := map[string]*promql.Series{}
		for _, t := range ts {
			v, ann, err := g.run(ctx, cq, req.Query, t, t, 0)
			if err != nil {
				return nil, err
			}
			res.Annotations.Merge(ann)
			vec, _ := v.(promql.Vector)
			for _, s := range vec {
				k := s.Metric.String()
				if series[k] == nil {
					series[k] = &promql.Series{Metric: s.Metric}
				}
				series[k].Floats = append(series[k].Floats, promql.FPoint{T: s.T, F: s.F})
			}
		}
		m := make(promql.Matrix, 0, len(series))
		for _, s := range series {
			m = append(m, *s)
		}
		sort.Sort(m)
		res.Value = m
		return res, nil
	}
	v, ann, err := g.run(ctx, cq, req.Query, req.Start, req.End, req.Step)
	if err != nil {
		return nil, err
	}
	res.Value, res.Annotations = v, ann
	return res, nil
}

// operator evaluates raw PromQL for administrators; Exec audits it.
func (g *Gate) operator(ctx context.Context, req Request) (*Result, error) {
	if _, err := g.parser.ParseExpr(req.Query); err != nil {
		return nil, err // Exec shows the parser's message to operators
	}
	v, ann, err := g.run(ctx, g.o.Queryable, req.Query, req.Start, req.End, req.Step)
	if err != nil {
		return nil, err
	}
	return &Result{Value: v, Annotations: ann}, nil
}

func (g *Gate) run(ctx context.Context, q storage.Queryable, qs string, start, end time.Time, step time.Duration) (parser.Value, annotations.Annotations, error) {
	var query promql.Query
	var err error
	if step == 0 {
		query, err = g.o.Engine.NewInstantQuery(ctx, q, nil, qs, start)
	} else {
		query, err = g.o.Engine.NewRangeQuery(ctx, q, nil, qs, start, end, step)
	}
	if err != nil {
		return nil, nil, refuse(ruleParse, "%v", err)
	}
	defer query.Close()
	r := query.Exec(ctx)
	if r.Err != nil {
		return nil, nil, fmt.Errorf("evaluating: %w", r.Err)
	}
	return r.Value, r.Warnings, nil
}

// cells returns the Venn partition of family f on day d, cached per
// registry snapshot and set of valid perimeter versions.
func (g *Gate) cells(r *registry.Registry, f family, d localday.Day) *cells {
	// Every aggregate of every day asks: build the key without fmt.
	key := make([]byte, 0, 64)
	key = append(append(append(append(append(append(key, f.audience...), '/'), f.flow...), '/'), f.form...), '/')
	for i := range r.Perimeters {
		if f.has(&r.Perimeters[i]) && r.Perimeters[i].ValidOn(d) {
			key = append(strconv.AppendInt(key, int64(i), 10), ',')
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cacheReg != r {
		g.cacheReg, g.cellCache = r, map[string]*cells{}
	}
	c, ok := g.cellCache[string(key)]
	if !ok {
		c = partition(r, f, d)
		g.cellCache[string(key)] = c
	}
	return c
}

func rows(v parser.Value) int {
	switch v := v.(type) {
	case promql.Vector:
		return len(v)
	case promql.Matrix:
		n := 0
		for _, s := range v {
			n += len(s.Floats) + len(s.Histograms)
		}
		return n
	case promql.Scalar:
		return 1
	}
	return 0
}

func emptyValue(req Request) parser.Value {
	if req.Step == 0 {
		return promql.Vector{}
	}
	return promql.Matrix{}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// unavailable hides an evaluation error from the caller, except that the
// engine's own limits stay in the chain: a query past query.max_samples must
// be answered 422 so that the client does not retry it, and one past
// query.timeout is counted. Neither tells more than that the limit was hit.
func unavailable(err error) error {
	var tooMany promql.ErrTooManySamples
	var timeout promql.ErrQueryTimeout
	switch {
	case errors.As(err, &tooMany):
		return fmt.Errorf("%w: %w", ErrUnavailable, tooMany)
	case errors.As(err, &timeout):
		return fmt.Errorf("%w: %w", ErrUnavailable, timeout)
	}
	return ErrUnavailable
}
