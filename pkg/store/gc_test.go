package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// TestDeliveriesDuringHeadGarbageCollection: D+1 deliveries create series
// that hold only out-of-order samples, and every out-of-order compaction
// garbage-collects such series from the head. A TSDB without the upstream
// fixes (prometheus/prometheus#16333, #19272, #19470) can remove a series
// while an append to it is under way and lose the sample while the commit
// succeeds: Prometheus 2.42 lost one meter-day in about one run of
// TestSimulatedDistrictOverEngines in three (docs/scaling.md). Here
// senders deliver two past days of new meters, one reading per commit,
// while the head is compacted and collected without pause; every
// acknowledged sample must be found afterwards. Run against the TSDB of
// Prometheus 2.42 (module v0.42.0, the same test with its older API), it
// failed 8 runs of 10, losing 1 to 4 first-day readings. It also requires
// that every reading went to the out-of-order head and that series were
// collected, so that it cannot pass by missing the path it is about.
func TestDeliveriesDuringHeadGarbageCollection(t *testing.T) {
	const senders, meters = 4, 10000
	reg := prometheus.NewRegistry()
	db, err := OpenEmbedded(t.TempDir(), Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}, nil, reg)
	require.NoError(t, err)
	defer db.Close()

	// An in-order sample now: readings older than half the head's block
	// range (96 h) before it are out of order.
	now := time.Now().UnixMilli()
	app := db.Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "up"), now, 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	// Two days each, both out of order: the second reading goes to a
	// series that exists, or was just collected.
	midnight := time.Now().Add(-3 * 24 * time.Hour).Truncate(time.Hour)
	days := []int64{midnight.Add(-24 * time.Hour).UnixMilli(), midnight.UnixMilli()}

	meter := func(i int) labels.Labels {
		return labels.FromStrings("__name__", "linky_index_wh", "rmp", fmt.Sprintf("%014d", 20000000000000+i))
	}
	ctx, stop := context.WithCancel(context.Background())
	var collections atomic.Int64
	var collector sync.WaitGroup
	collector.Add(1)
	go func() {
		defer collector.Done()
		for ctx.Err() == nil {
			if err := db.CompactOOOHead(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("compacting the out-of-order head: %v", err)
				return
			}
			collections.Add(1)
		}
	}()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d, at := range days {
				for i := s; i < meters; i += senders {
					app := db.Appender(context.Background())
					if _, err := app.Append(0, meter(i), at, float64(i+d)); err != nil {
						t.Errorf("meter %d: %v", i, err)
						return
					}
					if err := app.Commit(); err != nil {
						t.Errorf("meter %d: %v", i, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	stop()
	collector.Wait()
	require.Positive(t, collections.Load())

	q, err := db.Querier(days[0], days[1])
	require.NoError(t, err)
	defer q.Close()
	found := map[string][]float64{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "linky_index_wh"))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			rmp := set.At().Labels().Get("rmp")
			found[rmp] = append(found[rmp], v)
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, set.Err())
	var lost []string
	for i := range meters {
		if got := found[meter(i).Get("rmp")]; len(got) != 2 || got[0] != float64(i) || got[1] != float64(i+1) {
			lost = append(lost, fmt.Sprintf("%s %v", meter(i).Get("rmp"), got))
		}
	}
	require.Empty(t, lost, "acknowledged readings lost over %d out-of-order compactions", collections.Load())
	// The test took the path it is about: every reading went to the
	// out-of-order head, and collections removed series from the head.
	require.Equal(t, float64(2*meters), gathered(t, reg, "prometheus_tsdb_head_out_of_order_samples_appended_total"))
	require.Positive(t, gathered(t, reg, "prometheus_tsdb_head_series_removed_total"))
	t.Logf("%d readings of two days delivered over %d out-of-order compactions, none lost", meters, collections.Load())
}

// gathered is the sum of a metric's series in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
