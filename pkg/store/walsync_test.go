package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestWALSyncerGroupsAndOrders: what a caller wrote before it called Sync
// is covered by an fsync when Sync returns, and concurrent calls share
// fsyncs. Each caller appends to the segment, as a commit does, and
// requires that an fsync which began once the segment held its write has
// finished.
func TestWALSyncerGroupsAndOrders(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "wal"), 0o755))
	seg := filepath.Join(dir, "wal", "00000003")
	f, err := os.OpenFile(seg, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer f.Close()

	s := NewWALSyncer(dir)
	var durable, fsyncs atomic.Int64 // bytes of the segment an fsync covered
	s.fsync = func(path string) error {
		if path != seg {
			return nil
		}
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		fsyncs.Add(1)
		time.Sleep(time.Millisecond)
		for {
			d := durable.Load()
			if info.Size() <= d || durable.CompareAndSwap(d, info.Size()) {
				break
			}
		}
		return nil
	}
	const callers = 64
	var wg sync.WaitGroup
	var writes sync.Mutex
	for range callers {
		wg.Go(func() {
			for range 10 {
				writes.Lock()
				_, err := f.Write([]byte{1})
				info, serr := f.Stat()
				writes.Unlock()
				if err != nil || serr != nil {
					t.Error(err, serr)
					return
				}
				if err := s.Sync(); err != nil {
					t.Error(err)
				}
				if got := durable.Load(); got < info.Size() {
					t.Errorf("returned with %d bytes fsynced, the caller's write ended at %d", got, info.Size())
				}
			}
		})
	}
	wg.Wait()
	require.Less(t, fsyncs.Load(), int64(callers*10), "concurrent calls share fsyncs")
	t.Logf("%d calls, %d fsyncs", callers*10, fsyncs.Load())
}

// TestWALSyncerSyncsTheNewestSegmentsAndDirectory: the two newest segments
// of the WAL and the WBL when they changed since their last fsync, and a
// directory, after the segments, whenever its newest segment is new; an
// error comes back to the caller, and the segment is fsynced again.
func TestWALSyncerSyncsTheNewestSegmentsAndDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"wal/00000001", "wal/00000002", "wal/00000010", "wal/checkpoint.00000001/00000000", "wbl/00000000"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
	}
	appendTo := func(f string) {
		t.Helper()
		h, err := os.OpenFile(filepath.Join(dir, f), os.O_WRONLY|os.O_APPEND, 0o644)
		require.NoError(t, err)
		_, err = h.Write([]byte("record"))
		require.NoError(t, err)
		require.NoError(t, h.Close())
	}
	s := NewWALSyncer(dir)
	var mu sync.Mutex
	var synced []string
	s.fsync = func(path string) error {
		rel, _ := filepath.Rel(dir, path)
		mu.Lock()
		synced = append(synced, rel)
		mu.Unlock()
		return fsyncPath(path)
	}
	syncNow := func() []string {
		t.Helper()
		synced = nil
		require.NoError(t, s.Sync())
		return synced
	}
	got := syncNow()
	require.ElementsMatch(t, []string{"wal/00000002", "wal/00000010", "wal", "wbl/00000000", "wbl"}, got)
	require.ElementsMatch(t, []string{"wal", "wbl"}, got[3:], "directories after the segments")

	require.Empty(t, syncNow(), "nothing changed: no fsync")

	appendTo("wal/00000010")
	require.Equal(t, []string{"wal/00000010"}, syncNow(), "only the segment written to")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "wal", "00000011"), nil, 0o644))
	appendTo("wbl/00000000")
	got = syncNow()
	require.ElementsMatch(t, []string{"wal/00000011", "wbl/00000000", "wal"}, got, "the new segment, the one written to, the directory")
	require.Equal(t, "wal", got[2])

	broken := errors.New("I/O error")
	appendTo("wal/00000011")
	s.fsync = func(string) error { return broken }
	require.ErrorIs(t, s.Sync(), broken)
	s.fsync = func(path string) error {
		rel, _ := filepath.Rel(dir, path)
		synced = append(synced, rel)
		return nil
	}
	require.Equal(t, []string{"wal/00000011"}, syncNow(), "a failed fsync is tried again")
}

// TestWALSyncerOnTheTSDB syncs a real TSDB's logs after commits, in-order
// and out-of-order (the WBL).
func TestWALSyncerOnTheTSDB(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenEmbedded(dir, Options{Retention: 365 * 24 * time.Hour, OutOfOrderWindow: 7 * 24 * time.Hour}, nil, nil)
	require.NoError(t, err)
	defer db.Close()
	s := NewWALSyncer(dir)
	var n atomic.Int64
	s.fsync = func(path string) error { n.Add(1); return fsyncPath(path) }
	ls := labels.FromStrings("__name__", "linky_index_wh", "rmp", "20000000000001")
	now := time.Now()
	for _, at := range []time.Time{now, now.Add(-48 * time.Hour)} { // the second is out of order
		app := db.AppenderV2(context.Background())
		_, err := app.Append(0, ls, 0, at.UnixMilli(), 1, nil, nil, storage.AOptions{})
		require.NoError(t, err)
		require.NoError(t, app.Commit())
		require.NoError(t, s.Sync())
	}
	segs, err := segments(filepath.Join(dir, "wbl"))
	require.NoError(t, err)
	require.NotEmpty(t, segs, "the out-of-order sample went to the WBL")
	require.GreaterOrEqual(t, n.Load(), int64(4))
}
