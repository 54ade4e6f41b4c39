package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

// CompactedBytes is what a stopped metergate's data costs once everything
// is compacted: it opens the data directory (replaying the write-ahead log
// and the out-of-order log), writes the out-of-order head and the head into
// blocks, merges overlapping blocks, and sums the blocks' bytes.
//
// A Prometheus TSDB keeps its last hours (the head, up to 1.5 head block
// ranges) in the write-ahead log and m-mapped head chunks until they age
// into a block; the directory as the server leaves it is therefore not
// "after compaction", and a larger head block range makes it look larger
// for days while the data would end up in the same blocks. VictoriaMetrics
// merges its parts as it goes, so its directory after a graceful stop is
// already the compacted figure.
func CompactedBytes(ctx context.Context, dir string, blockDuration time.Duration) (int64, error) {
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = (100 * 365 * 24 * time.Hour).Milliseconds()
	// Wide enough for every out-of-order sample of the payload to replay.
	opts.OutOfOrderTimeWindow = (30 * 24 * time.Hour).Milliseconds()
	opts.MinBlockDuration = blockDuration.Milliseconds()
	opts.MaxBlockDuration = max(opts.MinBlockDuration, (31 * 24 * time.Hour).Milliseconds())
	db, err := tsdb.Open(dir, nil, nil, opts, nil)
	if err != nil {
		return 0, fmt.Errorf("opening %s to compact it: %w", dir, err)
	}
	defer db.Close()
	if err := db.CompactOOOHead(ctx); err != nil {
		return 0, fmt.Errorf("compacting the out-of-order head of %s: %w", dir, err)
	}
	if h := db.Head(); h.NumSeries() > 0 {
		if err := db.CompactHead(tsdb.NewRangeHead(h, h.MinTime(), h.MaxTime())); err != nil {
			return 0, fmt.Errorf("compacting the head of %s: %w", dir, err)
		}
	}
	if err := db.Compact(ctx); err != nil {
		return 0, fmt.Errorf("merging the blocks of %s: %w", dir, err)
	}
	if err := db.Close(); err != nil {
		return 0, fmt.Errorf("closing %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", dir, err)
	}
	var total int64
	for _, e := range entries {
		// A block is a directory with a meta.json; the WAL, the WBL and the
		// head chunks are not blocks.
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); err != nil || !e.IsDir() {
			continue
		}
		n, err := DirBytes(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
