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

// TestWALSyncerGroupsAndOrders: every Sync returns only after a sync that
// began after it was called, and concurrent calls share syncs.
func TestWALSyncerGroupsAndOrders(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "wal"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wal", "00000003"), nil, 0o644))
	seg := filepath.Join(dir, "wal", "00000003")

	s := NewWALSyncer(dir)
	var begun, finished atomic.Int64 // runs, numbered from 1, of the segment's fsync
	s.fsync = func(path string) error {
		if path == seg {
			n := begun.Add(1)
			time.Sleep(time.Millisecond)
			finished.Store(n)
		}
		return nil
	}
	const callers = 64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range 10 {
				before := begun.Load()
				if err := s.Sync(); err != nil {
					t.Error(err)
				}
				if got := finished.Load(); got <= before {
					t.Errorf("returned after sync %d, which began before the call (%d had begun)", got, before)
				}
			}
		})
	}
	wg.Wait()
	require.Less(t, begun.Load(), int64(callers*10), "concurrent calls share syncs")
	t.Logf("%d calls, %d syncs", callers*10, begun.Load())
}

// TestWALSyncerSyncsTheNewestSegmentsAndDirectory: the two newest segments
// of the WAL and the WBL, and a directory whenever its newest segment is
// new; an error comes back to the caller.
func TestWALSyncerSyncsTheNewestSegmentsAndDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"wal/00000001", "wal/00000002", "wal/00000010", "wal/checkpoint.00000001/00000000", "wbl/00000000"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
	}
	s := NewWALSyncer(dir)
	var synced []string
	s.fsync = func(path string) error {
		rel, _ := filepath.Rel(dir, path)
		synced = append(synced, rel)
		return fsyncPath(path)
	}
	require.NoError(t, s.Sync())
	require.Equal(t, []string{"wal/00000002", "wal/00000010", "wal", "wbl/00000000", "wbl"}, synced)

	synced = nil
	require.NoError(t, s.Sync())
	require.Equal(t, []string{"wal/00000002", "wal/00000010", "wbl/00000000"}, synced, "no directory without a new segment")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "wal", "00000011"), nil, 0o644))
	synced = nil
	require.NoError(t, s.Sync())
	require.Equal(t, []string{"wal/00000010", "wal/00000011", "wal", "wbl/00000000"}, synced)

	broken := errors.New("I/O error")
	s.fsync = func(string) error { return broken }
	require.ErrorIs(t, s.Sync(), broken)
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
