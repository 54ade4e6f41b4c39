package enginestore_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/agent"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
)

// TestAgentForwardsOnlyNewerThanItsStart is why the forward queue is not
// Prometheus's agent (tsdb/agent) feeding storage/remote's queue manager:
// the WAL watcher behind the queue manager sends only samples stamped
// after the moment it started (tsdb/wlog.Watcher: s.T > startTimestamp,
// startTime = time.Now() in Watcher.loop). A Linky delivery is stamped
// yesterday (day D arrives during D+1), so it would be acknowledged by the
// agent's WAL and never leave. Both samples below are in one WAL record:
// once today's has arrived, yesterday's would have with it.
func TestAgentForwardsOnlyNewerThanItsStart(t *testing.T) {
	var mu sync.Mutex
	received := map[string]int{} // rmp → samples received
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, ts := range req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == catalogue.LabelRMP {
					received[l.Value] += len(ts.Samples)
				}
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	u, err := url.Parse(receiver.URL)
	require.NoError(t, err)

	dir := t.TempDir()
	rs := remote.NewStorage(nil, nil, func() (int64, error) { return 0, nil }, dir, time.Second, nil, false)
	defer rs.Close()
	db, err := agent.Open(slog.New(slog.DiscardHandler), nil, rs, dir, agent.DefaultOptions())
	require.NoError(t, err)
	defer db.Close()
	db.SetWriteNotified(rs) // as Prometheus wires them: the watcher reads each commit at once
	rw := config.DefaultRemoteWriteConfig
	rw.URL = &config_util.URL{URL: u}
	rw.Name = "engine"
	rw.QueueConfig.BatchSendDeadline = model.Duration(20 * time.Millisecond)
	rw.MetadataConfig.Send = false
	require.NoError(t, rs.ApplyConfig(&config.Config{GlobalConfig: config.DefaultGlobalConfig, RemoteWriteConfigs: []*config.RemoteWriteConfig{&rw}}))

	series := func(rmp string) labels.Labels {
		return labels.FromStrings(labels.MetricName, catalogue.IndexConsumption, catalogue.LabelRMP, rmp)
	}
	// The watcher starts tailing the WAL at some moment after ApplyConfig:
	// commit pairs until one of today's samples arrives, which proves it
	// was tailing when that pair was written.
	arrived := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received["21000000000002"] > 0
	}
	pairs := 0
	for deadline := time.Now().Add(15 * time.Second); !arrived(); pairs++ {
		require.True(t, time.Now().Before(deadline), "today's samples never reached the receiver")
		now := time.Now()
		app := db.Appender(context.Background())
		// Yesterday's closing index, as a concentrator delivers it at D+1.
		_, err = app.Append(0, series("21000000000001"), now.Add(-24*time.Hour).UnixMilli(), float64(1_000_000+pairs))
		require.NoError(t, err)
		// A sample stamped now, which the agent does forward.
		_, err = app.Append(0, series("21000000000002"), now.UnixMilli(), float64(2_000_000+pairs))
		require.NoError(t, err)
		require.NoError(t, app.Commit(), "the agent acknowledges both")
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d pairs committed before today's samples arrived", pairs)
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, received["21000000000001"], "yesterday's sample, in the same WAL record, is never sent")
}
