package gate

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
)

// consentQueryable is the only storage a consented query sees: series of
// the RMPs whose consent covers the whole queried period, addressed through
// a perimeter matcher, never past the D+2 limit, plus the derived daily
// metrics. Like prom-label-proxy's injection, the restriction lives in the
// data source, so no PromQL construct can reach other data.
type consentQueryable struct {
	base      storage.Queryable
	allowed   map[string]map[string]bool // perimeter → consented RMPs
	limit     int64                      // last readable timestamp (ms)
	tolerance time.Duration
	sealed    *sealedReads // the gate's reads of sealed blocks
	// push, when set, has the engine compute the daily energies and
	// select the consented RMPs' series (Options.Pushdown).
	push *pushdown
}

func (q *consentQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &consentQuerier{q: q, mint: mint, maxt: min(maxt, q.limit)}, nil
}

type consentQuerier struct {
	q          *consentQueryable
	mint, maxt int64
}

// No label listing: names and values of other RMPs are a side channel.
func (*consentQuerier) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*consentQuerier) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*consentQuerier) Close() error { return nil }

func (cq *consentQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var name, perimeter, rmp string
	for _, m := range ms {
		if m.Type != labels.MatchEqual {
			return storage.EmptySeriesSet() // the planner allows equality only
		}
		switch m.Name {
		case labels.MetricName:
			name = m.Value
		case LabelPerimeter:
			perimeter = m.Value
		case catalogue.LabelRMP:
			rmp = m.Value
		}
	}
	allowed := cq.q.allowed[perimeter]
	metric, ok := catalogue.Lookup(name)
	if len(allowed) == 0 || !ok {
		return storage.EmptySeriesSet()
	}
	take := func(prm string) bool { return allowed[prm] && (rmp == "" || prm == rmp) }
	mint, maxt := cq.mint, cq.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	if metric.DerivedFrom != "" {
		return cq.daily(ctx, metric, allowed, take, mint, maxt)
	}
	inner, err := cq.q.base.Querier(mint, maxt)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	h := &storage.SelectHints{Start: mint, End: maxt}
	if hints != nil {
		hc := *hints
		hc.Start, hc.End = mint, maxt
		h = &hc
	}
	sel := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name)}
	if cq.q.push != nil {
		// The engine sends only the consented RMPs' series.
		prms := allowedList(allowed, take)
		if len(prms) == 0 {
			_ = inner.Close()
			return storage.EmptySeriesSet()
		}
		sel = append(sel, labels.MustNewMatcher(labels.MatchRegexp, catalogue.LabelRMP, alternation(prms)))
	}
	set := inner.Select(ctx, sortSeries, h, sel...)
	return &closingSet{SeriesSet: &filterSet{SeriesSet: set, take: take}, close: inner.Close}
}

// daily serves a derived daily metric: one sample per day, stamped at the
// local midnight closing it, for consented RMPs.
func (cq *consentQuerier) daily(ctx context.Context, m *catalogue.Metric, allowed map[string]bool, take func(string) bool, mint, maxt int64) storage.SeriesSet {
	var days []localday.Day
	for d := localday.Of(timestamp.Time(mint)).AddDays(-1); ; d = d.AddDays(1) {
		end := timestamp.FromTime(d.End())
		if end > maxt {
			break
		}
		if end >= mint {
			days = append(days, d)
		}
	}
	var vals dailyValues
	var err error
	if cq.q.push != nil {
		vals, err = cq.q.push.daily(ctx, m.DerivedFrom, days, allowedList(allowed, take))
	} else {
		vals, err = readDaily(ctx, cq.q.base, cq.q.sealed, m.DerivedFrom, days, cq.q.tolerance)
	}
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	perRMP := map[string][]chunks.Sample{}
	for _, d := range days {
		for prm, v := range vals[d] {
			if take(prm) {
				perRMP[prm] = append(perRMP[prm], fsample{t: timestamp.FromTime(d.End()), f: v})
			}
		}
	}
	prms := make([]string, 0, len(perRMP))
	for prm := range perRMP {
		prms = append(prms, prm)
	}
	slices.Sort(prms)
	series := make([]storage.Series, 0, len(prms))
	for _, prm := range prms {
		series = append(series, storage.NewListSeries(labels.FromStrings(labels.MetricName, m.Name, catalogue.LabelRMP, prm), perRMP[prm]))
	}
	return &listSet{series: series}
}

// allowedList lists the RMPs of allowed that take keeps, sorted.
func allowedList(allowed map[string]bool, take func(string) bool) []string {
	var out []string
	for prm := range allowed {
		if take(prm) {
			out = append(out, prm)
		}
	}
	slices.Sort(out)
	return out
}

type filterSet struct {
	storage.SeriesSet
	take func(string) bool
}

func (f *filterSet) Next() bool {
	for f.SeriesSet.Next() {
		if f.take(f.SeriesSet.At().Labels().Get(catalogue.LabelRMP)) {
			return true
		}
	}
	return false
}

type closingSet struct {
	storage.SeriesSet
	close func() error
}

func (c *closingSet) Next() bool {
	if c.SeriesSet.Next() {
		return true
	}
	if c.close != nil {
		c.close()
		c.close = nil
	}
	return false
}

type listSet struct {
	series []storage.Series
	i      int
}

func (l *listSet) Next() bool                        { l.i++; return l.i <= len(l.series) }
func (l *listSet) At() storage.Series                { return l.series[l.i-1] }
func (l *listSet) Err() error                        { return nil }
func (l *listSet) Warnings() annotations.Annotations { return nil }

// fsample is one float sample of a derived series.
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }
