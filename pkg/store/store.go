// Package store opens the storage metergate writes to and reads from.
//
// The server only ever sees Prometheus's own storage interfaces
// (storage.AppendableV2 for writes, storage.Queryable for reads), so that a
// distributed engine can later stand behind the same server unchanged. The
// default is an embedded Prometheus TSDB in a local directory.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

// Store is what the server needs of its storage.
type Store interface {
	storage.AppendableV2
	storage.Queryable
	// HeadSeries is the number of series in memory, for /metrics.
	HeadSeries() uint64
	// Ready reports whether the store accepts reads and writes.
	Ready(ctx context.Context) error
	Close() error
}

// Options of the embedded TSDB.
type Options struct {
	Retention time.Duration
	// OutOfOrderWindow is how far behind the newest sample a sample may be and
	// still be accepted. Linky delivers day D during D+1, so every reading is
	// hours to days old when it lands: a TSDB without this window refuses it.
	OutOfOrderWindow time.Duration
	// BlockDuration is the head block range; zero means DefaultBlockDuration.
	BlockDuration time.Duration
	// MaxBlockDuration caps the blocks compaction makes; zero means
	// DefaultMaxBlockDuration, limited to a tenth of the retention.
	MaxBlockDuration time.Duration
	// WALCompression is "snappy" (the default), "zstd" or "none". The TSDB
	// library leaves the write-ahead log uncompressed unless told; the
	// Prometheus server compresses it with snappy, and so does metergate.
	WALCompression string
}

// DefaultBlockDuration is the head block range when Options leave it zero.
// Linky delivers day D during D+1, so a reading is up to 48 h old when it
// arrives. The TSDB appends a sample in order only if it is at most half a
// head block range older than the newest one; with Prometheus's 2 h almost
// every D+1 reading takes the out-of-order path and compaction then costs
// 12 times the CPU of the append. 96 h (twice the delivery lag) lets each
// meter's day land in order and be written to a block once. Durability is
// the write-ahead log's, unchanged; the head holds up to 1.5 ranges (6 days)
// of readings, in m-mapped chunks. docs/performance.md has the measurements.
const DefaultBlockDuration = 96 * time.Hour

// DefaultMaxBlockDuration caps compacted blocks when Options leave it zero
// (and never above a tenth of the retention). Compaction ranges are the head
// range times 3ⁿ (96 h, 288 h, 864 h); Prometheus's 31-day cap stops them at
// 12 days, 36 days lets them reach 864 h: a year is about 14 blocks instead
// of 33, and reading a series over a range costs per block it spans (the
// export of a year, docs/exports.md). Retention drops whole blocks, so data
// outlives the retention by up to one block: 36 days instead of 12.
const DefaultMaxBlockDuration = 36 * 24 * time.Hour

// Embedded is a Prometheus TSDB in a local directory.
type Embedded struct {
	*tsdb.DB
}

// OpenEmbedded opens (or creates) the TSDB in dir. After a crash it replays
// the write-ahead log, so every acknowledged sample is back.
func OpenEmbedded(dir string, o Options, logger *slog.Logger, reg prometheus.Registerer) (*Embedded, error) {
	opts, err := tsdbOptions(o)
	if err != nil {
		return nil, err
	}
	logger = tsdbLogger(logger)
	if reg != nil {
		reg = replacingRegisterer{reg}
	}
	wal, chunks := filepath.Join(dir, "wal"), filepath.Join(dir, "chunks_head")
	walBefore, err := fileSizes(wal)
	if err != nil {
		return nil, err
	}
	chunksBefore, err := fileSizes(chunks)
	if err != nil {
		return nil, err
	}
	db, err := tsdb.Open(dir, logger, reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("opening TSDB in %s: %w", dir, err)
	}
	walAfter, err := fileSizes(wal)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if changed(walBefore, walAfter) {
		// The WAL was repaired. Head.Init returns at the first corrupt WAL
		// record, before it replays the WBL, and tsdb.Open repairs the WAL
		// without running the replay again (tsdb/head.go Head.Init,
		// tsdb/db.go open, v0.316.0): the head lacks every out-of-order
		// sample, and the WBL records this run would write (m-map markers
		// among them) make the next replay drop the ones it would find.
		// Open again: the WAL is sound now, the replay reads it and the
		// WBL to the end. The head chunks the first replay wrote go first:
		// on disk, they would make the second replay honour WBL markers of
		// chunks lost in the crash (see compactOutOfOrderHead).
		if err := db.Close(); err != nil {
			return nil, fmt.Errorf("closing TSDB in %s after repairing its WAL: %w", dir, err)
		}
		if err := removeNew(chunks, chunksBefore); err != nil {
			return nil, err
		}
		if db, err = tsdb.Open(dir, logger, reg, opts, nil); err != nil {
			return nil, fmt.Errorf("opening TSDB in %s after repairing its WAL: %w", dir, err)
		}
	}
	if err := compactOutOfOrderHead(context.Background(), db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening TSDB in %s: %w", dir, err)
	}
	return &Embedded{DB: db}, nil
}

// fileSizes lists the files of dir (none if it does not exist) with their
// sizes.
func fileSizes(dir string) (map[string]int64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	sizes := map[string]int64{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", dir, err)
		}
		sizes[e.Name()] = info.Size()
	}
	return sizes, nil
}

// changed tells whether a file of before is gone or of another size in
// after: a WAL repair rewrites the corrupt segment and removes the later
// ones, while opening only adds a segment.
func changed(before, after map[string]int64) bool {
	for name, size := range before {
		if now, ok := after[name]; !ok || now != size {
			return true
		}
	}
	return false
}

// removeNew removes the files of dir that are not in before.
func removeNew(dir string, before map[string]int64) error {
	after, err := fileSizes(dir)
	if err != nil {
		return err
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("removing the head chunks of the replay before a WAL repair: %w", err)
			}
		}
	}
	return nil
}

const walCorruptions = "prometheus_tsdb_wal_corruptions_total"

// replacingRegisterer lets OpenEmbedded open the TSDB a second time with
// the caller's registerer: a metric the first open registered is replaced
// by the new one, except the corruption count, which keeps the repair the
// first open made.
type replacingRegisterer struct {
	prometheus.Registerer
}

func (r replacingRegisterer) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	var already prometheus.AlreadyRegisteredError
	if !errors.As(err, &already) {
		return err
	}
	if describes(c, walCorruptions) {
		return nil
	}
	r.Registerer.Unregister(already.ExistingCollector)
	return r.Registerer.Register(c)
}

func (r replacingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// describes tells whether c collects the metric called name.
func describes(c prometheus.Collector, name string) bool {
	descs := make(chan *prometheus.Desc)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	found := false
	for d := range descs {
		found = found || strings.Contains(d.String(), `fqName: "`+name+`"`)
	}
	return found
}

// compactOutOfOrderHead writes the out-of-order samples the replay has just
// put back into the head to blocks, and so drops the WBL segments they came
// from, before anything else is written. It works around a loss of
// acknowledged out-of-order samples in Prometheus's TSDB (v0.316.0) when a
// crash follows a crash:
//
//   - When an out-of-order head chunk is full, the commit m-maps it (the
//     chunk goes through the chunk write queue and a buffer, so a SIGKILL
//     loses the newest chunks) and logs a marker naming it to the WBL
//     (headAppenderBase.commitFloats, collectOOORecords in
//     tsdb/head_append.go); the samples of the same commit follow the
//     marker in a second record of the same WBL write. A SIGKILL between
//     the two records leaves the marker without them.
//   - On replay, a marker makes loadWBL discard the out-of-order head chunk
//     built so far, its samples being in the m-mapped chunk; it skips a
//     marker whose chunk reference is past the last chunk on disk, taken
//     as lost in this crash (tsdb/head_wal.go, loadWBL: "This m-map chunk
//     from markers was not present during the load of mmapped chunks").
//     The first replay thus keeps the lost chunk's samples, acknowledged by
//     earlier commits, in the out-of-order head, with the WBL as their only
//     copy: no later sample of the series cuts and m-maps that chunk again.
//   - Each start writes head chunks to a new file
//     (chunks.ChunkDiskMapper.openMMapFiles sets the sequence, the next
//     write cuts a file). As soon as one of them is on disk, the last chunk
//     on disk is past the lost one, and the next replay honours the old
//     marker: it discards the head chunk holding those samples, and they
//     are gone (TestOutOfOrderSamplesSurviveTwoCrashes).
//
// Once the replayed samples are in blocks and their WBL segments are
// truncated, no old marker is left to honour. A crash before this
// compaction ends can still lose them, as without it: the window shrinks
// from a whole run of the server to its start. The cost is the compaction
// of the out-of-order head at every start: Linky days land in order with
// the default head block range, so it holds little. No upstream issue
// describes this at v0.316.0.
func compactOutOfOrderHead(ctx context.Context, db *tsdb.DB) error {
	if err := db.CompactOOOHead(ctx); err != nil {
		return fmt.Errorf("compacting the out-of-order samples replayed from the WBL: %w", err)
	}
	return nil
}

// HeadSeries is the number of series in the head block.
func (e *Embedded) HeadSeries() uint64 { return e.Head().NumSeries() }

// BlockRanges are the time ranges of the TSDB's blocks that cover
// [mint, maxt] (gate.TimeBlocks): a read pays per series for each block it
// touches, so the gate reads a long range one block at a time. Every block
// boundary and the head's start cut the time line; the first range is open
// before the first block, the last one after the head's start. Overlapping
// blocks (out-of-order data not yet compacted) only cut it finer.
func (e *Embedded) BlockRanges(mint, maxt int64) [][2]int64 {
	var cuts []int64
	for _, b := range e.Blocks() {
		cuts = append(cuts, b.MinTime(), b.MaxTime()) // MaxTime is exclusive: the next range starts there
	}
	if h := e.Head().MinTime(); h != math.MaxInt64 {
		cuts = append(cuts, h)
	}
	return RangesBetween(cuts, mint, maxt)
}

// RangesBetween cuts the time line at cuts (in any order) into contiguous
// ranges [lo, hi] and returns those that overlap [mint, maxt]: the first
// is open before the first cut (math.MinInt64), the last after the last
// one (math.MaxInt64).
func RangesBetween(cuts []int64, mint, maxt int64) [][2]int64 {
	cuts = slices.Clone(cuts)
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	var out [][2]int64
	lo := int64(math.MinInt64)
	for _, c := range append(cuts, math.MaxInt64) {
		hi := c - 1
		if c == math.MaxInt64 {
			hi = c
		}
		if hi >= mint && lo <= maxt && lo <= hi {
			out = append(out, [2]int64{lo, hi})
		}
		lo = c
	}
	return out
}

// Sealed returns the identity (ULID) of the one persisted block that holds
// all of [lo, hi] when nothing else can hold samples there: no other
// block, neither the in-memory head nor the out-of-order head overlaps it.
// A block never changes, so a read of such a range can be remembered under
// that identity (gate.TimeBlocks); compaction and retention make new
// blocks with new identities. The out-of-order head's range is the TSDB's
// own conservative bound: it never lies about a sample being there.
func (e *Embedded) Sealed(lo, hi int64) (string, bool) {
	var id string
	for _, b := range e.Blocks() {
		if b.MinTime() > hi || b.MaxTime() <= lo {
			continue
		}
		if id != "" || b.MinTime() > lo || b.MaxTime() <= hi {
			return "", false // several blocks, or one that does not hold all of it
		}
		id = b.Meta().ULID.String()
	}
	h := e.Head()
	switch {
	case id == "":
		return "", false
	case h.MinTime() <= hi:
		return "", false
	case h.MinOOOTime() <= hi && lo <= h.MaxOOOTime():
		return "", false
	}
	return id, true
}

// Ready is always nil once the TSDB is open: tsdb.Open replays the WAL before returning.
func (e *Embedded) Ready(context.Context) error { return nil }

// tsdbOptions turns metergate's storage options into the TSDB's.
func tsdbOptions(o Options) (*tsdb.Options, error) {
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = o.Retention.Milliseconds()
	opts.OutOfOrderTimeWindow = o.OutOfOrderWindow.Milliseconds()
	if o.BlockDuration <= 0 {
		o.BlockDuration = DefaultBlockDuration
	}
	opts.MinBlockDuration = o.BlockDuration.Milliseconds()
	switch o.WALCompression {
	case "":
		opts.WALCompression = compression.Snappy
	case compression.None, compression.Snappy, compression.Zstd:
		opts.WALCompression = o.WALCompression
	default:
		return nil, fmt.Errorf("unknown WAL compression %q (none, snappy or zstd)", o.WALCompression)
	}
	// As Prometheus does, compacted blocks grow to a tenth of the retention,
	// but up to DefaultMaxBlockDuration (36 days, not 31) so that the 864 h
	// range is used and queries over a year touch few blocks.
	if o.MaxBlockDuration <= 0 {
		o.MaxBlockDuration = DefaultMaxBlockDuration
	}
	maxBlock := min(o.Retention/10, o.MaxBlockDuration).Milliseconds()
	opts.MaxBlockDuration = max(maxBlock, opts.MinBlockDuration)
	return opts, nil
}
