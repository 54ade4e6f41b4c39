package enginestore_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/enginestore"
)

// syncBuffer is a log destination the queue's workers write to while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// metricValue reads one of the queue's metrics from its registry.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func batch(t *testing.T, v float64) []byte {
	t.Helper()
	req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "linky_index_wh"}, {Name: "rmp", Value: "21000000000001"}},
		Samples: []prompb.Sample{{Timestamp: 1711839600000, Value: v}},
	}}}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// openQueue opens a queue on dir towards url with short backoffs.
func openQueue(t *testing.T, dir, url string, maxBytes int64) (*enginestore.Queue, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	q, err := enginestore.OpenQueue(enginestore.Options{
		Kind: enginestore.VictoriaMetrics, WriteURL: url, QueueDir: dir, QueueMaxBytes: maxBytes,
		Concurrency: 1, Timeout: 5 * time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	}, slog.New(slog.NewTextHandler(logs, nil)), reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	return q, reg, logs
}

func drained(t *testing.T, q *enginestore.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, q.Drained(ctx))
}

// A batch the engine refuses with a 4xx is not retried (the remote-write
// specification: the sender must not retry a 4xx other than 429): it is
// counted, logged and set aside in rejected/, and the batches after it
// are delivered.
func TestQueueSetsAside4xx(t *testing.T) {
	var calls, refused atomic.Int32
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if calls.Load() == 1 {
			refused.Add(1)
			http.Error(w, "out of bounds", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer engine.Close()
	dir := t.TempDir()
	q, reg, logs := openQueue(t, dir, engine.URL, 1<<20)

	require.NoError(t, q.Enqueue(batch(t, 1)))
	drained(t, q)
	assert.Equal(t, int32(1), calls.Load(), "a 4xx is not retried")
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_rejected_batches_total"))
	assert.Zero(t, metricValue(t, reg, "metergate_forward_retries_total"))
	assert.Zero(t, metricValue(t, reg, "metergate_forward_queue_batches"))
	assert.Contains(t, logs.String(), "engine refused a batch")
	assert.Contains(t, logs.String(), "out of bounds", "the engine's reason is logged")
	rejected, err := os.ReadDir(filepath.Join(dir, "rejected"))
	require.NoError(t, err)
	require.Len(t, rejected, 1, "kept for the operator, not deleted")

	require.NoError(t, q.Enqueue(batch(t, 2)))
	drained(t, q)
	assert.Equal(t, int32(2), calls.Load())
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_sent_batches_total"))
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_rejected_batches_total"))
}

// A 5xx and a 429 are retried until the engine takes the batch.
func TestQueueRetries5xxAnd429(t *testing.T) {
	var calls atomic.Int32
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		case 2:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer engine.Close()
	q, reg, _ := openQueue(t, t.TempDir(), engine.URL, 1<<20)
	require.NoError(t, q.Enqueue(batch(t, 1)))
	drained(t, q)
	assert.Equal(t, int32(3), calls.Load())
	assert.Equal(t, 2.0, metricValue(t, reg, "metergate_forward_retries_total"))
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_sent_batches_total"))
	assert.Zero(t, metricValue(t, reg, "metergate_forward_rejected_batches_total"))
}

// Beyond queue_max_bytes a write is refused (the server answers 5xx and
// the sender keeps its data); once the engine has taken the backlog,
// writes are accepted again.
func TestQueueLimit(t *testing.T) {
	var up atomic.Bool
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer engine.Close()
	b := batch(t, 1)
	q, reg, _ := openQueue(t, t.TempDir(), engine.URL, int64(2*len(b)))
	require.NoError(t, q.Enqueue(b))
	require.NoError(t, q.Enqueue(batch(t, 2)))
	err := q.Enqueue(batch(t, 3))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "forward queue full")
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_enqueue_failures_total"))
	assert.Equal(t, 2.0, metricValue(t, reg, "metergate_forward_queue_batches"))
	assert.Equal(t, float64(2*len(b)), metricValue(t, reg, "metergate_forward_queue_bytes"))
	require.NoError(t, q.Err(), "a full queue is not a failed one")

	up.Store(true)
	drained(t, q)
	require.NoError(t, q.Enqueue(batch(t, 3)), "room again once the engine took the backlog")
	drained(t, q)
	assert.Equal(t, 3.0, metricValue(t, reg, "metergate_forward_sent_batches_total"))
}

// A queue directory that cannot be written (a full or failed disk; here
// the directory is gone) refuses the write instead of acknowledging it,
// leaves no partial batch and reserves no space.
func TestQueueDiskFailure(t *testing.T) {
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer engine.Close()
	dir := filepath.Join(t.TempDir(), "queue")
	q, reg, _ := openQueue(t, dir, engine.URL, 1<<20)
	require.NoError(t, os.RemoveAll(dir))
	err := q.Enqueue(batch(t, 1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "writing to the forward queue")
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_enqueue_failures_total"))
	assert.Zero(t, metricValue(t, reg, "metergate_forward_queue_bytes"), "the failed batch's space is released")
	assert.Zero(t, q.Len())

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "rejected"), 0o755))
	require.NoError(t, q.Enqueue(batch(t, 2)), "the disk is back")
	drained(t, q)
	assert.Equal(t, 1.0, metricValue(t, reg, "metergate_forward_sent_batches_total"))
}
