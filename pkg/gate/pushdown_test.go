package gate_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
)

// promAPI is an engine's query API played by Prometheus's own engine over
// a storage, in-process: what an engine answers the gate's PromQL, without
// HTTP. The real engines are exercised by remote/server's engine tests.
type promAPI struct {
	eng     *promql.Engine
	q       storage.Queryable
	queries atomic.Int64
}

func newPromAPI(q storage.Queryable) *promAPI {
	return &promAPI{q: q, eng: promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})}
}

func toMetric(ls labels.Labels) model.Metric {
	m := model.Metric{}
	ls.Range(func(l labels.Label) { m[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return m
}

// exec runs q and hands its value to use before closing it: the engine
// recycles a closed query's points for the queries that follow.
func (p *promAPI) exec(ctx context.Context, q promql.Query, err error, use func(parser.Value)) error {
	if err != nil {
		return err
	}
	defer q.Close()
	p.queries.Add(1)
	r := q.Exec(ctx)
	if r.Err != nil {
		return r.Err
	}
	use(r.Value)
	return nil
}

func (p *promAPI) Query(ctx context.Context, qs string, ts time.Time) (model.Vector, error) {
	q, err := p.eng.NewInstantQuery(ctx, p.q, nil, qs, ts)
	var out model.Vector
	err = p.exec(ctx, q, err, func(v parser.Value) {
		for _, s := range v.(promql.Vector) {
			out = append(out, &model.Sample{Metric: toMetric(s.Metric), Timestamp: model.Time(s.T), Value: model.SampleValue(s.F)})
		}
	})
	return out, err
}

func (p *promAPI) QueryRange(ctx context.Context, qs string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	q, err := p.eng.NewRangeQuery(ctx, p.q, nil, qs, start, end, step)
	var out model.Matrix
	err = p.exec(ctx, q, err, func(v parser.Value) {
		for _, s := range v.(promql.Matrix) {
			ss := &model.SampleStream{Metric: toMetric(s.Metric)}
			for _, f := range s.Floats {
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.Time(f.T), Value: model.SampleValue(f.F)})
			}
			out = append(out, ss)
		}
	})
	return out, err
}

// RangeLeftOpen asks the engine, as enginestore does of Prometheus.
func (p *promAPI) RangeLeftOpen(ctx context.Context) (bool, error) {
	v, err := p.Query(ctx, "count_over_time(vector(1)[2ms:1ms])", time.Unix(1_000_000, 0))
	if err != nil {
		return false, err
	}
	return v[0].Value == 2, nil
}

func (p *promAPI) Raw() storage.Queryable { return p.q }

// rawReads counts the selections of index registers: with push-down, the
// public and restricted paths must make none (the engine computes).
type rawReads struct {
	storage.Queryable
	mu      sync.Mutex
	indexes int
}

func (r *rawReads) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := r.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &rawQuerier{Querier: q, r: r}, nil
}

type rawQuerier struct {
	storage.Querier
	r *rawReads
}

func (q *rawQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	for _, m := range ms {
		if m.Name == labels.MetricName && (m.Value == catalogue.IndexConsumption || m.Value == catalogue.IndexInjection) {
			q.r.mu.Lock()
			q.r.indexes++
			q.r.mu.Unlock()
		}
	}
	return q.Querier.Select(ctx, sortSeries, hints, ms...)
}

func (r *rawReads) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.indexes
}

// gatePair is a gate computing from raw samples and one pushing down to
// the in-process engine, over the same data and registry.
func gatePair(t *testing.T, reg *registry.Registry, db storage.Queryable, now time.Time) (local, pushed *gate.Gate, api *promAPI, raw *rawReads) {
	t.Helper()
	var err error
	local, err = gate.New(gate.Options{Registry: func() *registry.Registry { return reg }, Queryable: db, Now: func() time.Time { return now }})
	require.NoError(t, err)
	api = newPromAPI(db)
	raw = &rawReads{Queryable: db}
	pushed, err = gate.New(gate.Options{Registry: func() *registry.Registry { return reg }, Queryable: raw, Pushdown: api, Now: func() time.Time { return now }})
	require.NoError(t, err)
	return local, pushed, api, raw
}

// sameAnswer runs one request through both gates and requires the same
// decision, values, hidden points and warnings, exactly.
func sameAnswer(t *testing.T, local, pushed *gate.Gate, c *config.Caller, req gate.Request) *gate.Result {
	t.Helper()
	want, wantErr := local.Exec(context.Background(), c, req)
	got, err := pushed.Exec(context.Background(), c, req)
	require.Equal(t, wantErr, err, req.Query)
	if wantErr != nil {
		return nil
	}
	require.Equal(t, want.Value, got.Value, "%s: values", req.Query)
	require.Equal(t, want.Points, got.Points, "%s: published and hidden points, set sizes", req.Query)
	require.Equal(t, want.Suppressed, got.Suppressed, req.Query)
	ww, wi := want.Annotations.AsStrings("", 0, 0)
	gw, gi := got.Annotations.AsStrings("", 0, 0)
	require.Equal(t, ww, gw, req.Query)
	require.Equal(t, wi, gi, req.Query)
	return got
}

// TestPushdownAnswersAsTheGate: every row of the policy and attack table,
// and range queries over the 23- and 25-hour days, answered with the
// engine computing daily energies, set sizes, cell counts, sums, maxima and
// quartiles, are exactly what the gate computes from raw samples, and the
// aggregate path reads no raw index sample.
func TestPushdownAnswersAsTheGate(t *testing.T) {
	d := gatetest.Build(t)
	local, pushed, api, raw := gatePair(t, d.Registry, d.DB, d.Now)
	for _, c := range gatetest.Cases {
		before := raw.count()
		r := sameAnswer(t, local, pushed, caller(c.Audience, c.UseCases), gate.Request{Query: c.Query, Start: c.Day.End(), End: c.Day.End()})
		if r != nil && c.Audience != registry.Consented {
			assert.Equal(t, before, raw.count(), "%s: no raw index read on the aggregate path", c.Name)
		}
	}
	pub := caller(registry.Public, nil)
	for _, q := range []string{
		`sum(linky_consumption_daily_wh{perimeter="confluence"})`,
		`sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		`quantile(0.25, linky_consumption_daily_wh{perimeter="confluence"})`,
		`quantile(0.75, linky_injection_daily_wh{perimeter="producers"})`,
		`sum(linky_injection_daily_wh{perimeter="producers"}) / sum(linky_consumption_daily_wh{perimeter="cluster-k01"})`,
	} {
		for _, w := range gatetest.Windows {
			for _, step := range []time.Duration{24 * time.Hour, 48 * time.Hour, time.Hour} {
				sameAnswer(t, local, pushed, pub, gate.Request{Query: q, Start: w[0].Start(), End: w[1].End(), Step: step})
			}
		}
		// Both windows in one range: runs of days cut at the changes of
		// day length and at the days without data.
		sameAnswer(t, local, pushed, pub, gate.Request{Query: q, Start: gatetest.Windows[0][0].Start(), End: gatetest.Windows[1][1].End(), Step: 24 * time.Hour})
	}
	// As an export asks them: one read cache across the queries of a slice.
	ctx := gate.WithReadCache(context.Background())
	for _, q := range []string{
		`sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		`quantile(0.5, linky_consumption_daily_wh{perimeter="confluence"})`,
		`sum(linky_consumption_daily_wh{perimeter="confluence"})`,
	} {
		req := gate.Request{Query: q, Start: gatetest.Windows[0][0].Start(), End: gatetest.Windows[0][1].End(), Step: 24 * time.Hour}
		want, err := local.Exec(ctx, pub, req)
		require.NoError(t, err)
		got, err := pushed.Exec(ctx, pub, req)
		require.NoError(t, err)
		require.Equal(t, want.Value, got.Value, q)
		require.Equal(t, want.Points, got.Points, q)
	}
	cons := caller(registry.Consented, []registry.UseCase{registry.UC3})
	for _, w := range gatetest.Windows {
		sameAnswer(t, local, pushed, cons, gate.Request{Query: `linky_consumption_daily_wh{perimeter="uc3-b1"}`, Start: w[0].Start(), End: w[1].End(), Step: 24 * time.Hour})
		sameAnswer(t, local, pushed, cons, gate.Request{Query: `sum(linky_load_curve_watts{perimeter="uc3-b1"})`, Start: w[0].Start(), End: w[1].End(), Step: 30 * time.Minute})
	}
	assert.Positive(t, api.queries.Load())
}

// openEdges writes the edge district into a fresh TSDB.
func openEdges(t *testing.T, e *gatetest.Edges) *tsdb.DB {
	t.Helper()
	db := gatetest.OpenTSDB(t)
	samples := slices.Clone(e.Samples)
	slices.SortStableFunc(samples, func(a, b gatetest.Sample) int { return int(a.T - b.T) })
	app := db.Appender(context.Background())
	for _, s := range samples {
		_, err := app.Append(0, s.Labels, s.T, s.V)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	return db
}

// checkEdges asks a gate every edge case.
func checkEdges(t *testing.T, g *gate.Gate, e *gatetest.Edges) {
	t.Helper()
	for _, c := range e.Cases() {
		v, err := g.Query(context.Background(), caller(c.Audience, c.UseCases), c.Query, c.Day.End())
		require.NoError(t, err, c.Name)
		require.Equal(t, c.Want, asMap(t, v), c.Name)
	}
}

// TestPushdownEdges: on readings at the tolerance's bounds, split,
// agreeing and disagreeing series, a falling or flat index and stale
// markers, the engine's daily energy is readDaily's, RMP by RMP.
func TestPushdownEdges(t *testing.T) {
	e := gatetest.BuildEdges(5 * time.Minute)
	require.NoError(t, gate.CheckPartition(e.Registry))
	db := openEdges(t, e)
	local, pushed, _, raw := gatePair(t, e.Registry, db, e.Now)
	checkEdges(t, local, e)
	before := raw.count()
	checkEdges(t, pushed, e)
	assert.Equal(t, before, raw.count(), "the engine computed every daily energy")
}

// dropFigures is an engine whose answers lose the figures whose tag ends
// with suffix.
type dropFigures struct {
	*promAPI
	suffix string
}

func (d dropFigures) Query(ctx context.Context, qs string, ts time.Time) (model.Vector, error) {
	v, err := d.promAPI.Query(ctx, qs, ts)
	return slices.DeleteFunc(v, func(s *model.Sample) bool {
		return strings.HasSuffix(string(s.Metric["metergate_figure"]), d.suffix)
	}), err
}

// TestPushdownFailsClosed: an engine that counts contributors but does not
// answer the maximum (or the quartile) gets the query refused as
// unavailable, never a sum published unchecked for dominance.
func TestPushdownFailsClosed(t *testing.T) {
	d := gatetest.Build(t)
	pub := caller(registry.Public, nil)
	for suffix, q := range map[string]string{
		"/max": `sum(linky_injection_daily_wh{perimeter="producers"})`,
		"/q":   `quantile(0.5, linky_consumption_daily_wh{perimeter="confluence"})`,
	} {
		g, err := gate.New(gate.Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: d.DB,
			Pushdown: dropFigures{newPromAPI(d.DB), suffix}, Now: func() time.Time { return d.Now }})
		require.NoError(t, err)
		_, err = g.Query(context.Background(), pub, q, gatetest.DominantDay.End())
		require.ErrorIs(t, err, gate.ErrUnavailable, q)
	}
}
