package gate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/store"
)

// TestSealedReadsFollowTheStore: on the server's store, readings
// remembered from sealed blocks are the store's readings, and stop being
// used as soon as a sample lands in their range (the out-of-order head
// covers it) and once compaction has replaced the block.
func TestSealedReadsFollowTheStore(t *testing.T) {
	st, err := store.OpenEmbedded(t.TempDir(), store.Options{Retention: 365 * 24 * time.Hour, OutOfOrderWindow: 60 * 24 * time.Hour, BlockDuration: 48 * time.Hour}, nil, nil)
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	src, tol := catalogue.IndexConsumption, 5*time.Minute
	first, n := localday.Day{Year: 2026, Month: time.March, Day: 1}, 30
	series := func(m int) labels.Labels {
		return labels.FromStrings(labels.MetricName, src, catalogue.LabelRMP, fmt.Sprintf("%014d", 40000000000000+m))
	}
	st.DisableCompactions()
	app := st.AppenderV2(ctx)
	for d := range n + 1 {
		mid := timestamp.FromTime(first.AddDays(d).Start())
		for m := range 20 {
			_, err := app.Append(0, series(m), 0, mid-2*60*1000, float64(1000*d+m), nil, nil, storage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	st.EnableCompactions()
	require.NoError(t, st.Compact(ctx))
	require.Greater(t, len(st.Blocks()), 3)

	var days []localday.Day
	for d := range n {
		days = append(days, first.AddDays(d))
	}
	sealed := newSealedReads(DefaultSealedReadBytes)
	check := func(msg string) {
		t.Helper()
		for export := range 2 {
			sliced := WithSlicedRead(ctx)
			for k := 0; k < len(days); k += 7 {
				span := days[k:min(k+7, len(days))]
				want, err := readIndex(ctx, st, nil, src, span, tol)
				require.NoError(t, err)
				got, err := readIndex(sliced, st, sealed, src, span, tol)
				require.NoError(t, err)
				sameReadings(t, want, got, fmt.Sprintf("%s, export %d, from %s", msg, export, span[0]))
			}
		}
	}
	check("blocks")
	require.NotEmpty(t, sealed.entries, "sealed blocks remembered")

	// A late reading, later in its window than the one stored: it
	// changes that midnight's reading, in a block already remembered.
	b := st.Blocks()[1]
	late := nextLocalMidnight(b.MinTime() + 1)
	rg := st.BlockRanges(late, late)[0]
	_, ok := st.Sealed(rg[0], rg[1])
	require.True(t, ok, "block [%d, %d] sealed before the late sample", rg[0], rg[1])
	app = st.AppenderV2(ctx)
	_, err = app.Append(0, series(3), 0, late-1, 999999, nil, nil, storage.AOptions{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	_, ok = st.Sealed(rg[0], rg[1])
	require.False(t, ok, "the out-of-order head covers the block")
	check("after a late sample")
	got, err := readIndex(WithSlicedRead(ctx), st, sealed, src, []localday.Day{localday.Of(timestamp.Time(late))}, tol)
	require.NoError(t, err)
	require.Equal(t, 999999.0, got.readings[fmt.Sprintf("%014d", 40000000000003)][0])

	// Compaction writes the late sample into a new block: sealed again,
	// under another identity.
	require.NoError(t, st.CompactOOOHead(ctx))
	check("after compacting the out-of-order head")
}
