package server

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// reportWALRepair tells the operator, after the TSDB opened, that it found
// its write-ahead log corrupt (a torn write, a bad disk) and repaired it:
// Prometheus's TSDB keeps the records before the corruption and drops the
// rest of the segment and the segments after it. The samples dropped were
// the newest ones; prometheus_tsdb_wal_corruptions_total counts the repairs
// on /metrics.
func reportWALRepair(g prometheus.Gatherer, logger *slog.Logger) {
	mfs, err := g.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_tsdb_wal_corruptions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if n := m.GetCounter().GetValue(); n > 0 {
				// After a crash this is usually the unfinished last record,
				// never acknowledged; in the middle of the log it is damage.
				logger.Error("the write-ahead log was corrupt and has been repaired: the records from the corruption on were dropped (after a crash, usually only the unfinished last one, never acknowledged); see the tsdb log above for the segment and offset, and resend what was sent last if in doubt",
					"corruptions", n)
			}
		}
	}
}
