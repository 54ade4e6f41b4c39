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
type WALGuard struct {
	run sync.RWMutex // shared: requests on logged series; exclusive: the others

	mu     sync.Mutex
	logged map[uint64]storage.SeriesRef // label hash -> head reference with a WAL record
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
