package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/stretchr/testify/require"
)

func TestOptionsDefaults(t *testing.T) {
	opts, err := tsdbOptions(Options{Retention: 5 * 365 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, DefaultBlockDuration.Milliseconds(), opts.MinBlockDuration)
	require.Equal(t, compression.Snappy, opts.WALCompression)
	require.Equal(t, (864 * time.Hour).Milliseconds(), opts.MaxBlockDuration)

	// The cap is an option, and still at most a tenth of the retention.
	opts, err = tsdbOptions(Options{Retention: 5 * 365 * 24 * time.Hour, MaxBlockDuration: 31 * 24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, (31 * 24 * time.Hour).Milliseconds(), opts.MaxBlockDuration)
	opts, err = tsdbOptions(Options{Retention: 100 * 24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, (10 * 24 * time.Hour).Milliseconds(), opts.MaxBlockDuration)

	// A head block range above a tenth of the retention still opens.
	opts, err = tsdbOptions(Options{Retention: 24 * time.Hour, BlockDuration: 96 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, opts.MinBlockDuration, opts.MaxBlockDuration)

	_, err = tsdbOptions(Options{Retention: time.Hour, WALCompression: "lz4"})
	require.Error(t, err)
}

// Acknowledged samples survive a restart whatever the head block range:
// the write-ahead log, not the block range, is what makes them durable.
func TestRestartKeepsHead(t *testing.T) {
	dir := t.TempDir()
	o := Options{Retention: 365 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}
	db, err := OpenEmbedded(dir, o, nil, nil)
	require.NoError(t, err)
	ls := labels.FromStrings("__name__", "linky_index_wh", "rmp", "20000000000001")
	day := time.Now().Truncate(24 * time.Hour).Add(-48 * time.Hour)
	app := db.AppenderV2(context.Background())
	for h := range 48 {
		_, err := app.Append(0, ls, 0, day.Add(time.Duration(h)*time.Hour).UnixMilli(), float64(h), nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	require.NoError(t, db.Close())

	db, err = OpenEmbedded(dir, o, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	q, err := db.Querier(day.UnixMilli(), day.Add(48*time.Hour).UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "rmp", "20000000000001"))
	n := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			n++
		}
	}
	require.NoError(t, ss.Err())
	require.Equal(t, 48, n)
}

// BenchmarkAppend appends a week of meters straight into the embedded TSDB
// (no decoding, no validation) in both delivery shapes, one commit per
// 2000 samples as remote-write requests do, then compacts what became
// compactable, for each head block range. pkg/bench's BenchmarkIngest is
// the same through the remote-write handler.
func BenchmarkAppend(b *testing.B) {
	const meters, days, batch = 1000, 7, 2000
	const step = 30 * time.Minute
	start := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -days)
	series := make([]labels.Labels, meters)
	for m := range series {
		series[m] = labels.FromStrings("__name__", "linky_load_curve_watts", "cluster", fmt.Sprintf("k%02d", m%30+1),
			"concentrator", fmt.Sprintf("c%02d", m%61+1), "rmp", fmt.Sprintf("%014d", 20000000000000+m), "usage", "residential")
	}
	perDay := int(24 * time.Hour / step)
	type sample struct {
		m int
		t int64
	}
	order := map[string][]sample{}
	for d := range days {
		for s := 1; s <= perDay; s++ {
			for m := range meters {
				order["live"] = append(order["live"], sample{m, start.AddDate(0, 0, d).Add(time.Duration(s) * step).UnixMilli()})
			}
		}
		for m := range meters {
			for s := 1; s <= perDay; s++ {
				order["dplus1"] = append(order["dplus1"], sample{m, start.AddDate(0, 0, d).Add(time.Duration(s) * step).UnixMilli()})
			}
		}
	}
	for _, shape := range []string{"live", "dplus1"} {
		for _, block := range []time.Duration{2 * time.Hour, 24 * time.Hour, 96 * time.Hour} {
			b.Run(fmt.Sprintf("%s/block=%dh", shape, block/time.Hour), func(b *testing.B) {
				samples := order[shape]
				b.ReportAllocs()
				for b.Loop() {
					db, err := OpenEmbedded(b.TempDir(), Options{Retention: 5 * 365 * 24 * time.Hour,
						OutOfOrderWindow: 7 * 24 * time.Hour, BlockDuration: block}, nil, nil)
					if err != nil {
						b.Fatal(err)
					}
					ctx := context.Background()
					refs := make([]storage.SeriesRef, meters)
					app := db.AppenderV2(ctx)
					for i, s := range samples {
						ref, err := app.Append(refs[s.m], series[s.m], 0, s.t, float64(300+(s.m+i)%4700), nil, nil, storage.AOptions{})
						if err != nil {
							b.Fatal(err)
						}
						refs[s.m] = ref
						if (i+1)%batch == 0 {
							if err := app.Commit(); err != nil {
								b.Fatal(err)
							}
							app = db.AppenderV2(ctx)
						}
					}
					if err := app.Commit(); err != nil {
						b.Fatal(err)
					}
					if err := db.Compact(ctx); err != nil {
						b.Fatal(err)
					}
					if err := db.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(samples))*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
			})
		}
	}
}

// TestBlockRanges: the ranges the gate reads block by block cover the
// asked span without gap or overlap, and no range straddles a block
// boundary or the head's start.
func TestBlockRanges(t *testing.T) {
	db, err := OpenEmbedded(t.TempDir(), Options{Retention: 365 * 24 * time.Hour, OutOfOrderWindow: 60 * 24 * time.Hour, BlockDuration: 2 * time.Hour}, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	ls := labels.FromStrings("__name__", "linky_index_wh", "rmp", "20000000000001")
	start := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	db.DisableCompactions()
	app := db.AppenderV2(context.Background())
	for h := range 30 {
		_, err := app.Append(0, ls, 0, start.Add(time.Duration(h)*time.Hour).UnixMilli(), float64(h), nil, nil, storage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	db.EnableCompactions()
	require.NoError(t, db.Compact(context.Background()))
	require.NotEmpty(t, db.Blocks())

	mint, maxt := start.Add(-time.Hour).UnixMilli(), start.Add(40*time.Hour).UnixMilli()
	rs := db.BlockRanges(mint, maxt)
	require.LessOrEqual(t, rs[0][0], mint)
	require.GreaterOrEqual(t, rs[len(rs)-1][1], maxt)
	for k := 1; k < len(rs); k++ {
		require.Equal(t, rs[k-1][1]+1, rs[k][0], "contiguous")
	}
	cuts := []int64{db.Head().MinTime()}
	for _, b := range db.Blocks() {
		cuts = append(cuts, b.MinTime(), b.MaxTime())
	}
	for _, c := range cuts {
		for _, r := range rs {
			require.False(t, r[0] < c && c <= r[1], "range [%d, %d] straddles %d", r[0], r[1], c)
		}
	}
	// A span inside one block is one range.
	b := db.Blocks()[0]
	require.Equal(t, [][2]int64{{b.MinTime(), b.MaxTime() - 1}}, db.BlockRanges(b.MinTime()+1, b.MaxTime()-2))

	// A persisted block is sealed under its ULID; the head, a range
	// wider than one block, and a block the out-of-order head overlaps
	// are not.
	id, ok := db.Sealed(b.MinTime(), b.MaxTime()-1)
	require.True(t, ok)
	require.Equal(t, b.Meta().ULID.String(), id)
	_, ok = db.Sealed(db.Head().MinTime(), db.Head().MaxTime())
	require.False(t, ok, "head")
	_, ok = db.Sealed(b.MinTime()-1, b.MaxTime()-1)
	require.False(t, ok, "wider than the block")
	app = db.AppenderV2(context.Background())
	_, err = app.Append(0, ls, 0, b.MinTime()+1, -1, nil, nil, storage.AOptions{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	_, ok = db.Sealed(b.MinTime(), b.MaxTime()-1)
	require.False(t, ok, "out-of-order head over the block")
}
