package gate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/store"
)

// cutStorage is storage whose "blocks" are cut wherever the test says:
// reads by blocks must give what a plain read gives whatever the cuts,
// including cuts inside a reading's window, at a midnight, or none.
type cutStorage struct {
	storage.Queryable
	cuts []int64 // ascending
	// sealed, when set, calls every range between two cuts sealed,
	// under an identity that changes with the generation.
	sealed     bool
	generation int
}

func (c cutStorage) Sealed(lo, hi int64) (string, bool) {
	if !c.sealed || lo == math.MinInt64 || hi == math.MaxInt64 {
		return "", false
	}
	return fmt.Sprintf("%d-%d-%d", lo, hi, c.generation), true
}

func (c cutStorage) BlockRanges(mint, maxt int64) [][2]int64 {
	return store.RangesBetween(c.cuts, mint, maxt)
}

// blockReadFixture is a TSDB of index readings over two months around the
// autumn change of time: at and near midnights, inside and just outside
// the tolerance, several samples in a window, split and disagreeing
// series of one RMP, gaps.
func blockReadFixture(t *testing.T, tol time.Duration) (*tsdb.DB, localday.Day, int) {
	t.Helper()
	db := gatetest.OpenTSDB(t)
	first, days := localday.Day{Year: 2024, Month: time.October, Day: 1}, 60
	rng := rand.New(rand.NewPCG(1, 2))
	app := db.Appender(context.Background())
	add := func(rmp, series string, t0 int64, v float64) {
		_, err := app.Append(0, labels.FromStrings(labels.MetricName, catalogue.IndexConsumption, catalogue.LabelRMP, rmp, catalogue.LabelCluster, series), t0, v)
		require.NoError(t, err)
	}
	tolMs := tol.Milliseconds()
	for m := range 40 {
		rmp := fmt.Sprintf("%014d", 30000000000000+m)
		v := float64(rng.IntN(1e6))
		for d := range days + 1 {
			mid := timestamp.FromTime(first.AddDays(d).Start())
			v += float64(rng.IntN(20000))
			switch rng.IntN(12) {
			case 0: // gap
			case 1:
				add(rmp, "a", mid-tolMs, v) // just outside the window
			case 2:
				add(rmp, "a", mid-tolMs+1, v) // just inside
			case 3:
				add(rmp, "a", mid-tolMs/2, v-3) // two in the window: the last counts
				add(rmp, "a", mid, v)
			case 4:
				add(rmp, "a", mid, v) // two series that agree
				add(rmp, "b", mid-1, v)
			case 5:
				add(rmp, "a", mid, v) // two that disagree
				add(rmp, "b", mid, v+1)
			case 6:
				add(rmp, "a", mid+1, v) // just after: belongs to the next window
			default:
				add(rmp, "a", mid-int64(rng.IntN(int(tolMs))), v)
			}
		}
	}
	require.NoError(t, app.Commit())
	return db, first, days
}

// comparable drops the RMPs without any reading, which a plain read keeps
// and a read by blocks leaves out (neither makes a daily energy of them).
func comparable(r *indexRead) map[string][]float64 {
	out := map[string][]float64{}
	for rmp, rd := range r.readings {
		if !allNaN(rd) {
			out[rmp] = rd
		}
	}
	return out
}

func sameReadings(t *testing.T, want, got *indexRead, msg string) {
	t.Helper()
	require.Equal(t, want.midnights, got.midnights, msg)
	w, g := comparable(want), comparable(got)
	require.Equal(t, len(w), len(g), msg)
	for rmp, wr := range w {
		gr, ok := g[rmp]
		require.True(t, ok, "%s: %s missing", msg, rmp)
		for i := range wr {
			if math.IsNaN(wr[i]) {
				require.True(t, math.IsNaN(gr[i]), "%s: %s at %d: %v, want NaN", msg, rmp, i, gr[i])
				continue
			}
			require.Equal(t, wr[i], gr[i], "%s: %s at %d", msg, rmp, i)
		}
	}
}

// randomCuts cuts the fixture's time line at random instants, many of them
// at or near a midnight and its window.
func randomCuts(rng *rand.Rand, first localday.Day, days int, tol int64) []int64 {
	var cuts []int64
	for range rng.IntN(12) {
		mid := timestamp.FromTime(first.AddDays(rng.IntN(days + 2)).Start())
		switch rng.IntN(6) {
		case 0:
			cuts = append(cuts, mid)
		case 1:
			cuts = append(cuts, mid+1)
		case 2:
			cuts = append(cuts, mid-tol+1)
		case 3:
			cuts = append(cuts, mid-tol)
		case 4:
			cuts = append(cuts, mid-tol/2)
		default:
			cuts = append(cuts, mid+int64(rng.IntN(int(24*time.Hour/time.Millisecond))))
		}
	}
	slices.Sort(cuts)
	return slices.Compact(cuts)
}

// TestBlockReadsAgree: consecutive slices read by blocks (WithSlicedRead)
// give exactly the readings a plain read of each slice gives, whatever the
// block boundaries, slice lengths and order of evaluation.
func TestBlockReadsAgree(t *testing.T) {
	tol := 5 * time.Minute
	db, first, days := blockReadFixture(t, tol)
	ctx := context.Background()
	src := catalogue.IndexConsumption
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 7))
		q := cutStorage{Queryable: db, cuts: randomCuts(rng, first, days, tol.Milliseconds()), sealed: seed%3 != 0}
		sealed := newSealedReads(DefaultSealedReadBytes)
		if seed%5 == 0 {
			sealed = nil
		}
		var spans [][]localday.Day
		for d := 0; d < days; {
			n := 1 + rng.IntN(25)
			// Some slices take every day, others one day in a few (a
			// query_range with a step of days).
			every := 1
			if rng.IntN(3) == 0 {
				every = 2 + rng.IntN(6)
			}
			var span []localday.Day
			for k := d; k < min(d+n, days); k += every {
				span = append(span, first.AddDays(k))
			}
			spans = append(spans, span)
			d += n
		}
		// Two exports of the same slices: the second reads sealed blocks
		// from the first. Odd seeds evaluate two slices at once, as the
		// exporter does.
		for export := range 2 {
			sliced := WithSlicedRead(ctx)
			concurrent := seed%2 == 1
			got := make([]*indexRead, len(spans))
			errs := make([]error, len(spans))
			var wg sync.WaitGroup
			for k, span := range spans {
				read := func() { got[k], errs[k] = readIndex(sliced, q, sealed, src, span, tol) }
				if !concurrent {
					read()
					continue
				}
				wg.Go(read)
				if k%2 == 1 {
					wg.Wait()
				}
			}
			wg.Wait()
			for k, span := range spans {
				require.NoError(t, errs[k])
				want, err := readIndex(ctx, db, nil, src, span, tol)
				require.NoError(t, err)
				sameReadings(t, want, got[k], fmt.Sprintf("seed %d, export %d, slice %d (%s..%s), cuts %v", seed, export, k, span[0], span[len(span)-1], q.cuts))
			}
		}
		if sealed != nil && q.sealed {
			require.NotEmpty(t, sealed.entries, "seed %d: sealed blocks remembered", seed)
		}
	}
}

// TestBlockReadsEdges: the gate's edge readings (tolerance bounds, split
// and disagreeing series, stale markers, the changes of time) read by
// blocks cut at every midnight and inside every window.
func TestBlockReadsEdges(t *testing.T) {
	tol := 5 * time.Minute
	e := gatetest.BuildEdges(tol)
	db := gatetest.OpenTSDB(t)
	app := db.Appender(context.Background())
	samples := slices.Clone(e.Samples)
	slices.SortStableFunc(samples, func(a, b gatetest.Sample) int { return int(a.T - b.T) })
	for _, s := range samples {
		_, err := app.Append(0, s.Labels, s.T, s.V)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	ctx := context.Background()
	for _, d := range e.Days {
		days := []localday.Day{d.AddDays(-1), d, d.AddDays(1)}
		for _, cut := range []func(int64) int64{
			func(m int64) int64 { return m },
			func(m int64) int64 { return m + 1 },
			func(m int64) int64 { return m - tol.Milliseconds() + 1 },
			func(m int64) int64 { return m - tol.Milliseconds()/2 },
		} {
			var cuts []int64
			for _, x := range days {
				cuts = append(cuts, cut(timestamp.FromTime(x.Start())), cut(timestamp.FromTime(x.End())))
			}
			slices.Sort(cuts)
			q := cutStorage{Queryable: db, cuts: slices.Compact(cuts)}
			want, err := readIndex(ctx, db, nil, catalogue.IndexConsumption, days, tol)
			require.NoError(t, err)
			got, err := readIndex(WithSlicedRead(ctx), q, nil, catalogue.IndexConsumption, days, tol)
			require.NoError(t, err)
			sameReadings(t, want, got, fmt.Sprintf("%s, cuts %v", d, cuts))
		}
	}
}

func TestLocalMidnights(t *testing.T) {
	// The autumn change: a 25-hour day between two midnights.
	d := localday.Day{Year: 2024, Month: time.October, Day: 26}
	lo, hi := timestamp.FromTime(d.Start()), timestamp.FromTime(d.AddDays(2).Start())
	require.Equal(t, []int64{lo, lo + 24*3600e3, lo + 49*3600e3}, localMidnights(lo, hi))
	require.Equal(t, []int64{lo + 24*3600e3}, localMidnights(lo+1, hi-1))
	require.Empty(t, localMidnights(lo+1, lo+2))
}
