package ingest_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/pkg/store/storetest"
	"github.com/metergate/metergate/remote/ingest"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// pauseAfterWAL stops the next commit after it wrote its WAL records and
// before it puts its samples into the head: the TSDB calls Notify between
// the two (headAppenderBase.Commit, tsdb/head_append.go).
type pauseAfterWAL struct {
	armed   atomic.Bool
	paused  chan struct{}
	resumed chan struct{}
}

func newPauseAfterWAL() *pauseAfterWAL {
	return &pauseAfterWAL{paused: make(chan struct{}), resumed: make(chan struct{})}
}

func (p *pauseAfterWAL) Notify() {
	if p.armed.CompareAndSwap(true, false) {
		close(p.paused)
		<-p.resumed
	}
}

// daySeries is n meters' day d: 48 points a minute apart from base.
func daySeries(n, d int, base time.Time) []st.Series {
	out := make([]st.Series, n)
	for i := range out {
		out[i].Labels = index(fmt.Sprintf("%014d", i))
		for p := range 48 {
			out[i].Samples = append(out[i].Samples, prompb.Sample{Timestamp: base.Add(time.Duration(d*48+p) * time.Minute).UnixMilli(), Value: float64(d*48 + p)})
		}
	}
	return out
}

// Two requests write different days of the same series at once. The later
// day's commit writes its WAL record first, the earlier day's commit then
// writes its record and puts its samples into the head, in order, before
// the later day's samples are in the head. Without ordering the commits
// of appenders that share a series, the WAL then holds the later day
// before the earlier one: the replay after a crash finds the earlier day
// out of order and drops it, although it was acknowledged and stored in
// order (it is in no WBL record). The data directory is copied while the
// TSDB is open, as a SIGKILL leaves it, and reopened.
func TestCommitsOfOneSeriesReplayInOrder(t *testing.T) {
	dir := t.TempDir()
	opts := store.Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}
	db, err := store.OpenEmbedded(dir, opts, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	pause := newPauseAfterWAL()
	db.SetWriteNotified(pause)
	h := ingest.NewHandler(ingest.Options{Storage: db, WAL: ingest.NewWALGuard()})

	const meters = 3
	base := time.Now().Add(-9 * time.Hour).Truncate(time.Minute)
	send := func(day int) (int, string) {
		return post(h, "s", st.ContentTypeV1, st.EncodeV1(t, daySeries(meters, day, base)))
	}
	for day := range 2 { // the series exist and the WAL guard knows them
		code, body := send(day)
		require.Equal(t, http.StatusNoContent, code, body)
	}

	pause.armed.Store(true)
	later := make(chan error, 1)
	go func() {
		if code, body := send(5); code != http.StatusNoContent {
			later <- fmt.Errorf("day 5: %d %s", code, body)
			return
		}
		later <- nil
	}()
	<-pause.paused // day 5 is in the WAL, not yet in the head
	earlier := make(chan error, 1)
	go func() {
		if code, body := send(3); code != http.StatusNoContent {
			earlier <- fmt.Errorf("day 3: %d %s", code, body)
			return
		}
		earlier <- nil
	}()
	// Day 3 is acknowledged at once, unless its commit waits for day 5's
	// (the fix): then day 5 goes on after a while, and day 3 follows.
	select {
	case err := <-earlier:
		require.NoError(t, err)
		close(pause.resumed)
		require.NoError(t, <-later)
	case <-time.After(500 * time.Millisecond):
		close(pause.resumed)
		require.NoError(t, <-later)
		require.NoError(t, <-earlier)
	}
	for _, day := range []int{0, 1, 3, 5} {
		require.Equal(t, meters*48, countDay(t, db, base, day), "day %d before the crash", day)
	}

	crashed := t.TempDir()
	storetest.CopyDir(t, dir, crashed)
	reopened, err := store.OpenEmbedded(crashed, opts, nil, nil)
	require.NoError(t, err)
	defer reopened.Close()
	for _, day := range []int{0, 1, 3, 5} {
		require.Equal(t, meters*48, countDay(t, reopened, base, day), "day %d after the WAL replay: acknowledged samples lost", day)
	}
}

// countDay counts the samples of day d of every series.
func countDay(t *testing.T, db *store.Embedded, base time.Time, d int) int {
	t.Helper()
	mint := base.Add(time.Duration(d*48) * time.Minute).UnixMilli()
	maxt := base.Add(time.Duration(d*48+47) * time.Minute).UnixMilli()
	q, err := db.Querier(mint, maxt)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "linky_index_wh"))
	n := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			require.Equal(t, float64(d*48)+float64(ts-mint)/float64(time.Minute.Milliseconds()), v)
			require.False(t, math.IsNaN(v))
			n++
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return n
}

// BenchmarkIngestConcurrent measures four senders writing at once through
// the WAL guard into the embedded TSDB, one point of 500 series per
// request: "sharded" as Prometheus's and vmagent's shards send (each
// series has one sender), "shared" with every request of a round on the
// same series (the commits of a series wait for each other).
func BenchmarkIngestConcurrent(b *testing.B) {
	const senders, perSender, points = 4, 500, 48
	for _, shared := range []bool{false, true} {
		name := "sharded"
		if shared {
			name = "shared"
		}
		b.Run(name, func(b *testing.B) {
			base := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
			// bodies[g] are sender g's requests, in order.
			bodies := make([][][]byte, senders)
			for g := range senders {
				for p := range points {
					first := g * perSender
					if shared {
						first = 0
					}
					at := p*senders + g // shared: the senders interleave points of the same series
					if !shared {
						at = p
					}
					series := make([]st.Series, perSender)
					for i := range series {
						series[i].Labels = index(fmt.Sprintf("%014d", first+i))
						series[i].Samples = []prompb.Sample{{Timestamp: base.Add(time.Duration(at) * time.Second).UnixMilli(), Value: float64(at)}}
					}
					bodies[g] = append(bodies[g], st.EncodeV1(b, series))
				}
			}
			// One earlier point of every series, so that the timed
			// requests run alongside each other (the WAL guard knows
			// their series).
			all := make([]st.Series, senders*perSender)
			for i := range all {
				all[i].Labels = index(fmt.Sprintf("%014d", i))
				all[i].Samples = []prompb.Sample{{Timestamp: base.Add(-time.Minute).UnixMilli(), Value: 0}}
			}
			seed := st.EncodeV1(b, all)
			b.ReportAllocs()
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				db, err := store.OpenEmbedded(b.TempDir(), store.Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}, nil, nil)
				require.NoError(b, err)
				h := ingest.NewHandler(ingest.Options{Storage: db, WAL: ingest.NewWALGuard()})
				code, body := post(h, "s", st.ContentTypeV1, seed)
				require.Equal(b, http.StatusNoContent, code, body)
				b.StartTimer()
				began := time.Now()
				var wg sync.WaitGroup
				for g := range senders {
					wg.Go(func() {
						for _, body := range bodies[g] {
							if code, msg := post(h, "s", st.ContentTypeV1, body); code != http.StatusNoContent {
								b.Errorf("status %d: %s", code, msg)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed += time.Since(began)
				b.StopTimer()
				require.NoError(b, db.Close())
				b.StartTimer()
			}
			b.ReportMetric(float64(senders*perSender*points*b.N)/elapsed.Seconds(), "samples/s")
		})
	}
}

// Requests of different days of the same series, all out of order,
// committed at once, then a crash: every acknowledged sample is back. The
// out-of-order head cuts a chunk every 32 samples and logs an m-map
// marker to the WBL, at which the replay discards the out-of-order head
// chunk; WBL records of overlapping commits in another order than the
// head took their samples lose the samples cut after another commit's
// marker (see WALGuard.commitAlone). Rounds of four concurrent requests on
// a new TSDB each, copied as a SIGKILL would leave it; the race is not
// forced, so it takes a number of rounds to meet it without the fix.
func TestConcurrentOutOfOrderCommitsSurviveCrash(t *testing.T) {
	const meters, writers = 20, 4
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	if os.Getenv("METERGATE_LONG") != "" {
		rounds = 1000
	}
	opts := store.Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}
	base := time.Now().Add(-9 * time.Hour).Truncate(time.Minute)
	bodies := make([][]byte, writers+1)
	for day := range bodies {
		bodies[day] = st.EncodeV1(t, daySeries(meters, day, base))
	}
	for round := range rounds {
		dir := t.TempDir()
		db, err := store.OpenEmbedded(dir, opts, nil, nil)
		require.NoError(t, err)
		h := ingest.NewHandler(ingest.Options{Storage: db, WAL: ingest.NewWALGuard()})
		// The newest day first: the others are out of order.
		code, body := post(h, "s", st.ContentTypeV1, bodies[writers])
		require.Equal(t, http.StatusNoContent, code, body)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for day := range writers {
			wg.Go(func() {
				<-start
				code, body := post(h, "s", st.ContentTypeV1, bodies[day])
				assert.Equal(t, http.StatusNoContent, code, body)
			})
		}
		close(start)
		wg.Wait()
		crashed := t.TempDir()
		storetest.CopyDir(t, dir, crashed)
		require.NoError(t, db.Close())
		reopened, err := store.OpenEmbedded(crashed, opts, nil, nil)
		require.NoError(t, err)
		for day := range writers + 1 {
			require.Equal(t, meters*48, countDay(t, reopened, base, day), "round %d, day %d after the WAL and WBL replay: acknowledged samples lost", round, day)
		}
		require.NoError(t, reopened.Close())
	}
}
