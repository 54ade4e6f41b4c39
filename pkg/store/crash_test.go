package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/store/storetest"
)

// The crash tests write index registers on a minute grid that starts 9
// hours ago: inside the 7-day out-of-order window, before now.
var (
	crashMeter = labels.FromStrings("__name__", "linky_index_wh", "rmp", "20000000000001")
	crashOther = labels.FromStrings("__name__", "linky_index_wh", "rmp", "20000000000002")
)

type minuteGrid struct{ base time.Time }

func newMinuteGrid() minuteGrid {
	return minuteGrid{time.Now().Add(-9 * time.Hour).Truncate(time.Minute)}
}

// at is the instant of a minute of the grid, in milliseconds.
func (g minuteGrid) at(minute int) int64 {
	return g.base.Add(time.Duration(minute) * time.Minute).UnixMilli()
}

// write appends minutes [from, to) of ls, each valued its minute, in one
// commit.
func (g minuteGrid) write(t *testing.T, db *Embedded, ls labels.Labels, from, to int) {
	t.Helper()
	app := db.Appender(context.Background())
	for m := from; m < to; m++ {
		_, err := app.Append(0, ls, g.at(m), float64(m))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

// A SIGKILL in the middle of an out-of-order commit can leave in the WBL
// the m-map marker of a chunk whose samples record never reached the file,
// and lose the chunk itself (the TSDB writes head chunks through a queue
// and a buffer). The first replay skips the marker, its chunk being past
// the last one on disk, and keeps the chunk's acknowledged samples in the
// out-of-order head, from the WBL only. Every start writes head chunks to
// a new file; once one is on disk, the next replay takes the old marker
// for a chunk on disk and drops those samples (see compactOutOfOrderHead).
// Here the crash is a copy of the open TSDB's directory with the WBL cut
// after its last marker, as the kill test left it.
func TestOutOfOrderSamplesSurviveTwoCrashes(t *testing.T) {
	o := Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}
	dir := t.TempDir()
	db, err := OpenEmbedded(dir, o, nil, nil)
	require.NoError(t, err)
	meter, other, grid := crashMeter, crashOther, newMinuteGrid()
	grid.write(t, db, meter, 400, 401) // the newest: what follows is out of order
	grid.write(t, db, meter, 0, 32)    // acknowledged: fills an out-of-order chunk
	grid.write(t, db, meter, 32, 33)   // cuts it: marker, then this sample, in the WBL

	crashed := t.TempDir()
	storetest.CopyDir(t, dir, crashed)
	require.NoError(t, db.Close())
	dropLastWBLRecord(t, crashed) // the commit of minute 32 was cut after its marker

	// First start: the marker's chunk is not on disk, the replay keeps the
	// 32 samples in the out-of-order head. Then head chunks of this run
	// reach the disk, here by a clean shutdown.
	db, err = OpenEmbedded(crashed, o, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 32, countSamples(t, db, meter, grid.at(0), grid.at(31)), "after the first crash")
	grid.write(t, db, other, 400, 401)
	grid.write(t, db, other, 0, 64) // out-of-order chunks m-mapped to the new file
	require.NoError(t, db.Close())

	db, err = OpenEmbedded(crashed, o, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, 32, countSamples(t, db, meter, grid.at(0), grid.at(31)), "after the second start: acknowledged out-of-order samples lost")
	require.Equal(t, 64, countSamples(t, db, other, grid.at(0), grid.at(63)))
}

// A crash that leaves the WAL's last record unfinished (a SIGKILL in the
// middle of a commit, never acknowledged) makes tsdb.Open repair the WAL;
// the replay stopped at that record, before it read the WBL, so the
// out-of-order samples were missing from the head, and the compaction of
// the out-of-order head at the start truncated the WBL, their only copy.
// OpenEmbedded opens the repaired TSDB again.
func TestOutOfOrderSamplesSurviveWALRepair(t *testing.T) {
	o := Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}
	dir := t.TempDir()
	db, err := OpenEmbedded(dir, o, nil, nil)
	require.NoError(t, err)
	meter, grid := crashMeter, newMinuteGrid()
	for _, minutes := range [][2]int{{400, 401}, {0, 10}, {401, 402}} { // newest, out of order, last
		grid.write(t, db, meter, minutes[0], minutes[1])
	}
	crashed := t.TempDir()
	storetest.CopyDir(t, dir, crashed)
	require.NoError(t, db.Close())
	tearLastWALRecord(t, crashed) // the last commit's record, unfinished

	reg := prometheus.NewRegistry()
	db, err = OpenEmbedded(crashed, o, nil, reg)
	require.NoError(t, err)
	require.Equal(t, 1.0, counterValue(t, reg, walCorruptions), "the WAL was repaired")
	require.Equal(t, 10, countSamples(t, db, meter, grid.at(0), grid.at(9)), "out-of-order samples after the WAL repair")
	require.NoError(t, db.Close())
	db, err = OpenEmbedded(crashed, o, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, 10, countSamples(t, db, meter, grid.at(0), grid.at(9)), "out-of-order samples on the next start")
}

// Both at once: a WBL marker of a lost chunk and an unfinished WAL record.
// The first open replays the WAL and writes head chunks of its own; if they
// stayed on disk, the second open (after the repair) would honour the
// marker and drop the chunk's samples, as the second start of
// TestOutOfOrderSamplesSurviveTwoCrashes does.
func TestOutOfOrderSamplesSurviveWALRepairAndLostChunk(t *testing.T) {
	o := Options{Retention: 30 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}
	dir := t.TempDir()
	db, err := OpenEmbedded(dir, o, nil, nil)
	require.NoError(t, err)
	meter, other, grid := crashMeter, crashOther, newMinuteGrid()
	grid.write(t, db, other, 0, 400) // in order: the replay cuts and m-maps head chunks
	grid.write(t, db, meter, 400, 401)
	grid.write(t, db, meter, 0, 32)
	grid.write(t, db, meter, 32, 33) // cuts the out-of-order chunk: marker, then this sample
	crashed := t.TempDir()
	storetest.CopyDir(t, dir, crashed)
	require.NoError(t, db.Close())
	dropLastWBLRecord(t, crashed)
	tearLastWALRecord(t, crashed)

	reg := prometheus.NewRegistry()
	db, err = OpenEmbedded(crashed, o, nil, reg)
	require.NoError(t, err)
	require.Equal(t, 1.0, counterValue(t, reg, walCorruptions), "the WAL was repaired")
	require.Equal(t, 32, countSamples(t, db, meter, grid.at(0), grid.at(31)), "after the WAL repair")
	require.Equal(t, 400, countSamples(t, db, other, grid.at(0), grid.at(399)))
	require.NoError(t, db.Close())
	db, err = OpenEmbedded(crashed, o, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	require.Equal(t, 32, countSamples(t, db, meter, grid.at(0), grid.at(31)), "on the next start")
}

// tearLastWALRecord corrupts the end of the WAL's last segment, as a crash
// in the middle of writing the last commit's record leaves it.
func tearLastWALRecord(t *testing.T, dir string) {
	t.Helper()
	_, last, err := wlog.Segments(filepath.Join(dir, "wal"))
	require.NoError(t, err)
	seg := wlog.SegmentName(filepath.Join(dir, "wal"), last)
	b, err := os.ReadFile(seg)
	require.NoError(t, err)
	require.Greater(t, len(b), 16)
	for i := len(b) - 8; i < len(b); i++ {
		b[i] ^= 0xff
	}
	require.NoError(t, os.WriteFile(seg, b, 0o644))
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func countSamples(t *testing.T, db *Embedded, ls labels.Labels, mint, maxt int64) int {
	t.Helper()
	q, err := db.Querier(mint, maxt)
	require.NoError(t, err)
	defer q.Close()
	var ms []*labels.Matcher
	ls.Range(func(l labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value)) })
	ss := q.Select(context.Background(), false, nil, ms...)
	n := 0
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			n++
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return n
}

// dropLastWBLRecord cuts the last segment of dir's WBL before its last
// record, which must be a samples record following an m-map marker.
func dropLastWBLRecord(t *testing.T, dir string) {
	t.Helper()
	wbl := filepath.Join(dir, "wbl")
	_, last, err := wlog.Segments(wbl)
	require.NoError(t, err)
	seg, err := wlog.OpenReadSegment(wlog.SegmentName(wbl, last))
	require.NoError(t, err)
	r := wlog.NewReader(wlog.NewSegmentBufReader(seg))
	var dec record.Decoder
	var types []record.Type
	var ends []int64
	for r.Next() {
		types = append(types, dec.Type(r.Record()))
		ends = append(ends, r.Offset())
	}
	require.NoError(t, r.Err())
	require.NoError(t, seg.Close())
	n := len(types)
	require.GreaterOrEqual(t, n, 2)
	require.Equal(t, []record.Type{record.MmapMarkers, record.Samples}, types[n-2:])
	require.NoError(t, os.Truncate(wlog.SegmentName(wbl, last), ends[n-2]))
}
