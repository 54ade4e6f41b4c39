package ingest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/storage"
)

// WALGuard keeps acknowledged samples replayable after a crash when
// several requests write the same new series at once.
//
// Prometheus's TSDB writes a series' record to the WAL when the appender
// that created the series commits. Another appender that appended to the
// same series and committed first wrote samples whose series the WAL does
// not know yet; if the process dies before the creator commits, WAL replay
// drops them ("Unknown series references", prometheus/prometheus#9841),
// although they were acknowledged. The guard lets a request run alongside
// others only while every series it touches is one whose record is known
// to be in the WAL under the reference the head still uses; a request that
// meets another series (new, or re-created after the head dropped it) is
// rolled back and run again alone, so that no other appender is open
// between its series' creation and its commit.
//
// The guard also keeps the commits of requests run alongside each other
// from overlapping (commitAlone): otherwise the WAL and the WBL can hold a
// series' samples in another order than the head took them, and the
// replay drops some.
type WALGuard struct {
	run sync.RWMutex // shared: requests on logged series; exclusive: the others

	mu     sync.Mutex
	logged map[uint64]storage.SeriesRef // label hash -> head reference with a WAL record

	commitMu sync.Mutex // held by the commit of a request run alongside others
}

// NewWALGuard returns a guard that knows no series yet.
func NewWALGuard() *WALGuard { return &WALGuard{logged: map[uint64]storage.SeriesRef{}} }

// Seed records a series of the head whose record is in the WAL (every
// series of the head right after the WAL replay).
func (g *WALGuard) Seed(hash uint64, ref storage.SeriesRef) {
	g.mu.Lock()
	g.logged[hash] = ref
	g.mu.Unlock()
}

func (g *WALGuard) isLogged(hash uint64, ref storage.SeriesRef) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.logged[hash]
	return ok && r == ref
}

func (g *WALGuard) record(refs map[uint64]storage.SeriesRef) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for h, r := range refs {
		g.logged[h] = r
	}
}

// commitAlone runs commit, the commit of an appender that ran alongside
// others, while no other such commit runs.
//
// Prometheus's TSDB commits in two steps with nothing holding them
// together across appenders (headAppenderBase.Commit in
// tsdb/head_append.go, v0.316.0): log writes all of the appender's samples
// to the WAL; then commitFloats decides, sample by sample under the series
// lock, whether each goes into the in-order head or the out-of-order one,
// and the out-of-order ones are written to the WBL last. Two commits on one
// series can therefore reach the WAL in one order and the head in the
// other: day 5's commit logs, day 3's logs and puts day 3 into the head in
// order (day 5 is not there yet), then day 5 follows in order. The replay
// puts every WAL sample through the in-order path and drops those older
// than the series' newest sample, leaving them to the WBL
// (processWALSamples, memSeries.append in tsdb/head_wal.go): day 3 comes
// after day 5 in the WAL, is dropped, and is in no WBL record. The WBL has
// the same race: at an m-map marker its replay discards the out-of-order
// head chunk (processWBLSamples), which loses samples whose WBL record
// precedes a marker of another commit although they went into the chunk
// cut after it. Both were acknowledged; a SIGKILL loses them. Commits that
// never overlap write the WAL, the head and the WBL in one order, which
// the replay repeats. TestCommitsOfOneSeriesReplayInOrder,
// TestConcurrentOutOfOrderCommitsSurviveCrash.
//
// Only commits of requests sharing a series need ordering, but keeping
// track of the series of every commit cost more (a map insert and delete
// per series, 10-20 % of BenchmarkIngestConcurrent/sharded) than ordering
// all commits: the WAL write, most of a commit, is serialised by the WAL's
// own lock anyway, and decoding, validation and appends still run at once.
func (g *WALGuard) commitAlone(commit func() error) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	return commit()
}

// errNeedsExclusive rolls a shared attempt back; the handler runs the
// request again alone.
var errNeedsExclusive = errors.New("request touches a series not yet in the WAL: run again alone")

// quietRetries drops the write handler's error log of a shared attempt
// rolled back for errNeedsExclusive: it is not an error, the request runs
// again.
type quietRetries struct{ slog.Handler }

func (q quietRetries) Handle(ctx context.Context, r slog.Record) error {
	quiet := false
	r.Attrs(func(a slog.Attr) bool {
		if strings.Contains(a.Value.String(), errNeedsExclusive.Error()) {
			quiet = true
			return false
		}
		return true
	})
	if quiet {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietRetries) WithAttrs(as []slog.Attr) slog.Handler {
	return quietRetries{q.Handler.WithAttrs(as)}
}

func (q quietRetries) WithGroup(name string) slog.Handler {
	return quietRetries{q.Handler.WithGroup(name)}
}
