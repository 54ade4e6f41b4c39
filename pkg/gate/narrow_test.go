package gate

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
)

// recording is a storage that remembers the RMPs of the series its
// selects returned.
type recording struct {
	storage.Queryable
	mu   sync.Mutex
	rmps []string
}

func (r *recording) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := r.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return recordingQuerier{q, r}, nil
}

func (r *recording) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.rmps
	r.rmps = nil
	return out
}

type recordingQuerier struct {
	storage.Querier
	r *recording
}

func (q recordingQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	set := q.Querier.Select(ctx, sortSeries, hints, ms...)
	var kept []storage.Series
	for set.Next() {
		s := set.At()
		q.r.mu.Lock()
		q.r.rmps = append(q.r.rmps, s.Labels().Get(catalogue.LabelRMP))
		q.r.mu.Unlock()
		kept = append(kept, s)
	}
	if err := set.Err(); err != nil {
		return storage.ErrSeriesSet(err)
	}
	return &listSeriesSet{series: kept, i: -1}
}

type listSeriesSet struct {
	series []storage.Series
	i      int
}

func (s *listSeriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *listSeriesSet) At() storage.Series                { return s.series[s.i] }
func (s *listSeriesSet) Err() error                        { return nil }
func (s *listSeriesSet) Warnings() annotations.Annotations { return nil }

// Every allowed public and restricted case of the gate's table gives the
// same answer narrowed (no read cache) as reading every series (under a
// read cache), and a narrowed read only returns series of RMPs the
// perimeter's selector chooses.
func TestNarrowedReadsGiveTheSameAnswers(t *testing.T) {
	d := gatetest.Build(t)
	rec := &recording{Queryable: d.DB}
	g, err := New(Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: rec, Now: func() time.Time { return d.Now }})
	require.NoError(t, err)
	narrowedOnce := false
	for _, c := range gatetest.Cases {
		if c.Refused || (c.Audience != registry.Public && c.Audience != registry.Restricted) {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			caller := &config.Caller{Name: "test", Audience: c.Audience, UseCases: c.UseCases}
			req := Request{Query: c.Query, Start: c.Day.End(), End: c.Day.End()}
			rec.take()
			narrowed, err := g.Exec(context.Background(), caller, req)
			require.NoError(t, err)
			read := rec.take()
			whole, err := g.Exec(WithReadCache(context.Background()), caller, req)
			require.NoError(t, err)
			all := rec.take()
			require.Equal(t, whole.Value, narrowed.Value)
			require.Equal(t, whole.Points, narrowed.Points)
			require.Equal(t, whole.Suppressed, narrowed.Suppressed)

			p, err := g.parser.ParseExpr(c.Query)
			require.NoError(t, err)
			pl := &planner{reg: d.Registry, caller: caller}
			_, err = pl.plan(p)
			require.NoError(t, err)
			chosen := map[string]bool{}
			for i := range d.Registry.Meters {
				for j := range d.Registry.Perimeters {
					if per := &d.Registry.Perimeters[j]; slices.Contains(pl.perimeters, per.Name) && per.Select.Match(&d.Registry.Meters[i]) {
						chosen[d.Registry.Meters[i].PRM] = true
					}
				}
			}
			if 2*len(chosen) > len(d.Registry.Meters) {
				require.ElementsMatch(t, all, read, "a perimeter of most of the district is read by name")
				return
			}
			// Only producers have an injection index: narrowing to them
			// may read every series of it.
			require.LessOrEqual(t, len(read), len(all))
			narrowedOnce = narrowedOnce || len(read) < len(all)
			for _, rmp := range read {
				require.True(t, chosen[rmp], "read %s, which no perimeter of the query selects", rmp)
			}
		})
	}
	require.True(t, narrowedOnce, "no case of the table exercised a narrowed read")
}

func TestNarrowReads(t *testing.T) {
	d := gatetest.Build(t)
	ctx := context.Background()
	matcher := func(ctx context.Context) *labels.Matcher {
		m, _ := ctx.Value(narrowKey{}).(*labels.Matcher)
		return m
	}
	m := matcher(narrowReads(ctx, d.Registry, []string{"cluster-k01"}))
	require.NotNil(t, m)
	require.Equal(t, catalogue.LabelRMP, m.Name)
	k01 := d.Clusters["k01"]
	for _, prm := range k01 {
		require.True(t, m.Matches(prm), prm)
	}
	for _, prm := range d.All() {
		if !slices.Contains(k01, prm) {
			require.False(t, m.Matches(prm), "%s is not in k01", prm)
		}
	}
	require.Nil(t, matcher(narrowReads(ctx, d.Registry, []string{"confluence"})), "the whole district is read by name")
	require.Nil(t, matcher(narrowReads(WithReadCache(ctx), d.Registry, []string{"cluster-k01"})), "a read cache serves other perimeters")
	require.Nil(t, matcher(narrowReads(ctx, d.Registry, []string{"no-such-perimeter"})))
}
