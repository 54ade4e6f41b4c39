package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTSDBLoggerLowersRoutineWarnings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		log   func(*slog.Logger)
		want  string // the line's level and message; "" for none
	}{
		{"overlaps at warn level", slog.LevelWarn,
			func(l *slog.Logger) {
				l.Warn("Overlapping blocks found during reloadBlocks", "detail", "[mint: 1, maxt: 2]")
			}, ""},
		{"aborted compaction at warn level", slog.LevelWarn,
			func(l *slog.Logger) { l.Warn("aborting block compactions to persist the head block") }, ""},
		{"overlaps at debug level", slog.LevelDebug,
			func(l *slog.Logger) {
				l.Warn("Overlapping blocks found during reloadBlocks", "detail", "[mint: 1, maxt: 2]")
			},
			`level=DEBUG msg="Overlapping blocks found during reloadBlocks"`},
		{"any other warning", slog.LevelWarn,
			func(l *slog.Logger) { l.Warn("Found healthy block", "mint", 1) }, `level=WARN msg="Found healthy block"`},
		{"the same message as an error", slog.LevelWarn,
			func(l *slog.Logger) { l.Error("Overlapping blocks found during reloadBlocks") },
			`level=ERROR msg="Overlapping blocks found during reloadBlocks"`},
		{"through With", slog.LevelWarn,
			func(l *slog.Logger) {
				l.With("component", "tsdb").WithGroup("g").Warn("Overlapping blocks found during reloadBlocks")
			}, ""},
		{"a compaction interrupted by the shutdown", slog.LevelWarn,
			func(l *slog.Logger) {
				l.Error("compaction failed", "err", errors.Join(fmt.Errorf("populate block: %w", context.Canceled), context.Canceled))
			}, ""},
		{"a compaction interrupted by the shutdown at debug level", slog.LevelDebug,
			func(l *slog.Logger) {
				l.Error("compaction failed", "err", fmt.Errorf("compact head: %w", context.Canceled))
			},
			`level=DEBUG msg="compaction failed"`},
		{"a compaction that failed", slog.LevelWarn,
			func(l *slog.Logger) { l.Error("compaction failed", "err", errors.New("no space left on device")) },
			`level=ERROR msg="compaction failed" err="no space left on device"`},
		{"another warning through With", slog.LevelWarn,
			func(l *slog.Logger) { l.With("component", "tsdb").Warn("WAL corruption detected") },
			`level=WARN msg="WAL corruption detected" component=tsdb`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			base := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}}))
			tc.log(tsdbLogger(base))
			if tc.want == "" {
				require.Empty(t, out.String())
				return
			}
			require.Contains(t, out.String(), tc.want)
		})
	}
	require.Nil(t, tsdbLogger(nil), "no logger: the TSDB's own no-op one")
}
