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
				logger.Error("the write-ahead log was corrupt and has been repaired: the records from the corruption on were dropped; senders must resend what they sent last (see the tsdb log above for the segment and offset)",
					"corruptions", n)
			}
		}
	}
}
