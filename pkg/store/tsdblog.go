package store

import (
	"context"
	"errors"
	"log/slog"
)

// routine are the TSDB's warnings that describe how metergate uses it, not
// a fault; they are logged at debug level.
//
// With out-of-order samples accepted, and Linky data arriving a day late,
// out-of-order compaction writes blocks that overlap the in-order ones
// until vertical compaction merges them, and head compactions interrupt
// block compactions. Upstream logs both at warn level on every block
// reload, with the whole list of overlaps: the demo's 90-day backfill
// printed 65 such lines, some of them kilobytes long. Grafana Mimir's
// TSDB fork logs the first at debug level for the same reason
// (grafana/mimir-prometheus#302).
var routine = map[string]bool{
	"Overlapping blocks found during reloadBlocks":         true,
	"aborting block compactions to persist the head block": true,
}

// interrupted tells whether a record is the TSDB's report of a compaction
// that the shutdown cancelled (Close cancels the context of the running
// compaction, and the next start compacts again): an error record
// otherwise, logged on every Ctrl-C that falls in a compaction.
func interrupted(r slog.Record) bool {
	if r.Level != slog.LevelError || r.Message != "compaction failed" {
		return false
	}
	canceled := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
			canceled = errors.Is(err, context.Canceled)
		}
		return !canceled
	})
	return canceled
}

// tsdbLogger is the logger given to the TSDB: logger, with the routine
// warnings and the compactions interrupted by a shutdown lowered to debug.
func tsdbLogger(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return nil
	}
	return slog.New(routineHandler{logger.Handler()})
}

type routineHandler struct{ slog.Handler }

func (h routineHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && routine[r.Message] || interrupted(r) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h routineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return routineHandler{h.Handler.WithAttrs(attrs)}
}

func (h routineHandler) WithGroup(name string) slog.Handler {
	return routineHandler{h.Handler.WithGroup(name)}
}
