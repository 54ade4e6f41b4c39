package enginestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/storage/remote"
)

// Queue is the forward queue: one file per acknowledged batch (the exact
// remote-write 1.0 body), written and fsync'd before the sender gets its
// 204, removed once the engine answered 2xx.
//
// Why not Prometheus's agent WAL and queue manager: the WAL watcher that
// feeds the queue manager only sends samples stamped after the moment it
// started (tsdb/wlog.Watcher.readSegment keeps s.T > startTimestamp), and
// it does not remember across restarts what it sent. Linky readings are
// always stamped in the past (day D is delivered during D+1), so the agent
// would forward none of them, and a restart would drop whatever was queued.
// A batch-per-file queue keeps the one property that matters here: a batch
// acknowledged is on disk until the engine has confirmed it. Sending reuses
// Prometheus's remote-write client, whose errors classify 5xx, 429 and
// network errors as recoverable, as the remote-write spec asks.
type Queue struct {
	dir    string
	o      Options
	client remote.WriteClient
	logger *slog.Logger

	mu      sync.Mutex
	pending []uint64 // sequence numbers not yet taken by a worker, in order
	active  int      // batches on disk (pending + in flight)
	bytes   int64    // their size
	next    uint64
	changed chan struct{} // closed and replaced when pending or active change
	err     error         // the directory failed

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mBatches, mBytes             prometheus.Gauge
	mSent, mRetries, mRejected   prometheus.Counter
	mSentBytes, mEnqueueFailures prometheus.Counter
}

const batchExt = ".rw"

// OpenQueue opens dir, queues the batches a previous run left, and starts
// the workers.
func OpenQueue(o Options, logger *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	dir := o.QueueDir
	if err := os.MkdirAll(filepath.Join(dir, "rejected"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the forward queue %s: %w", dir, err)
	}
	u, err := url.Parse(o.WriteURL)
	if err != nil {
		return nil, fmt.Errorf("write_url: %w", err)
	}
	client, err := remote.NewWriteClient("metergate", &remote.ClientConfig{
		URL:              &config_util.URL{URL: u},
		Timeout:          model.Duration(o.Timeout),
		HTTPClientConfig: config_util.DefaultHTTPClientConfig,
		Headers:          o.headers(),
		RetryOnRateLimit: true,
	})
	if err != nil {
		return nil, fmt.Errorf("remote-write client: %w", err)
	}
	f := promauto.With(reg)
	q := &Queue{dir: dir, o: o, client: client, logger: logger, changed: make(chan struct{}),
		mBatches:         f.NewGauge(prometheus.GaugeOpts{Name: "metergate_forward_queue_batches", Help: "Batches acknowledged to senders and not yet confirmed by the engine."}),
		mBytes:           f.NewGauge(prometheus.GaugeOpts{Name: "metergate_forward_queue_bytes", Help: "Size on disk of the forward queue."}),
		mSent:            f.NewCounter(prometheus.CounterOpts{Name: "metergate_forward_sent_batches_total", Help: "Batches the engine confirmed."}),
		mSentBytes:       f.NewCounter(prometheus.CounterOpts{Name: "metergate_forward_sent_bytes_total", Help: "Compressed bytes the engine confirmed."}),
		mRetries:         f.NewCounter(prometheus.CounterOpts{Name: "metergate_forward_retries_total", Help: "Sends that failed with a recoverable error (5xx, 429, network) and will be retried."}),
		mRejected:        f.NewCounter(prometheus.CounterOpts{Name: "metergate_forward_rejected_batches_total", Help: "Batches the engine refused (4xx), moved to the queue's rejected/ directory."}),
		mEnqueueFailures: f.NewCounter(prometheus.CounterOpts{Name: "metergate_forward_enqueue_failures_total", Help: "Writes refused because the queue was full or its disk failed."}),
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the forward queue: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "tmp-") {
			// A batch whose write was interrupted was never acknowledged.
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		seq, ok := parseBatchName(name)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("reading the forward queue: %w", err)
		}
		q.pending = append(q.pending, seq)
		q.bytes += info.Size()
		q.next = max(q.next, seq+1)
	}
	slices.Sort(q.pending)
	q.active = len(q.pending)
	q.updateGauges()
	if q.active > 0 {
		logger.Info("resuming the forward queue", "batches", q.active, "bytes", q.bytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	for range o.Concurrency {
		q.wg.Add(1)
		go q.work(ctx)
	}
	return q, nil
}

func batchName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, batchExt) }

func parseBatchName(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, batchExt)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return seq, err == nil
}

// Enqueue writes a batch (a snappy-compressed remote-write 1.0 body)
// durably: temporary file, fsync, rename, fsync of the directory. Only then
// may the sender be told its samples are stored.
func (q *Queue) Enqueue(body []byte) error {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		q.mEnqueueFailures.Inc()
		return q.err
	}
	if q.bytes+int64(len(body)) > q.o.QueueMaxBytes {
		q.mu.Unlock()
		q.mEnqueueFailures.Inc()
		return fmt.Errorf("forward queue full (%d bytes waiting for the engine)", q.bytes)
	}
	seq := q.next
	q.next++
	// Reserve the space now so that concurrent writes respect the bound.
	q.bytes += int64(len(body))
	q.mu.Unlock()

	if err := q.writeFile(seq, body); err != nil {
		q.mu.Lock()
		q.bytes -= int64(len(body))
		q.mu.Unlock()
		q.mEnqueueFailures.Inc()
		return fmt.Errorf("writing to the forward queue: %w", err)
	}
	q.mu.Lock()
	q.pending = append(q.pending, seq)
	q.active++
	q.notifyLocked()
	q.mu.Unlock()
	return nil
}

func (q *Queue) writeFile(seq uint64, body []byte) error {
	tmp := filepath.Join(q.dir, "tmp-"+batchName(seq))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.dir, batchName(seq)))
	}
	if err == nil {
		err = syncDir(q.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// notifyLocked wakes the workers and Drained waiters.
func (q *Queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
	q.updateGauges()
}

func (q *Queue) updateGauges() {
	q.mBatches.Set(float64(q.active))
	q.mBytes.Set(float64(q.bytes))
}

// take returns the oldest pending batch, waiting for one.
func (q *Queue) take(ctx context.Context) (uint64, bool) {
	for {
		q.mu.Lock()
		if len(q.pending) > 0 {
			seq := q.pending[0]
			q.pending = q.pending[1:]
			q.mu.Unlock()
			return seq, true
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, false
		case <-ch:
		}
	}
}

func (q *Queue) work(ctx context.Context) {
	defer q.wg.Done()
	for {
		seq, ok := q.take(ctx)
		if !ok {
			return
		}
		q.send(ctx, seq)
	}
}

// send delivers one batch, retrying recoverable failures with exponential
// backoff until it succeeds or the queue closes (the file then stays for
// the next run).
func (q *Queue) send(ctx context.Context, seq uint64) {
	path := filepath.Join(q.dir, batchName(seq))
	body, err := os.ReadFile(path)
	if err != nil {
		q.fail(fmt.Errorf("reading queued batch %s: %w", path, err))
		return
	}
	backoff := q.o.MinBackoff
	for attempt := 0; ; attempt++ {
		_, err = q.client.Store(ctx, body, attempt)
		var recoverable remote.RecoverableError
		if err == nil || !errors.As(err, &recoverable) {
			break
		}
		if ctx.Err() != nil {
			return
		}
		q.mRetries.Inc()
		if attempt == 0 || attempt%10 == 0 {
			q.logger.Warn("engine unavailable, batch kept on disk and retried", "batch", seq, "attempt", attempt+1, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, q.o.MaxBackoff)
	}
	if err != nil {
		// A 4xx: resending cannot help. The batch is kept aside, not
		// deleted, so that an operator can see what the engine refused.
		q.mRejected.Inc()
		q.logger.Error("engine refused a batch; moved to rejected/", "batch", seq, "err", err)
		if rerr := os.Rename(path, filepath.Join(q.dir, "rejected", batchName(seq))); rerr != nil {
			q.fail(fmt.Errorf("moving a rejected batch: %w", rerr))
			return
		}
	} else {
		q.mSent.Inc()
		q.mSentBytes.Add(float64(len(body)))
		if rerr := os.Remove(path); rerr != nil {
			// The batch would be sent again after a restart; engines
			// ignore a sample sent twice with the same value.
			q.logger.Error("removing a confirmed batch", "batch", seq, "err", rerr)
		}
	}
	q.mu.Lock()
	q.active--
	q.bytes -= int64(len(body))
	q.notifyLocked()
	q.mu.Unlock()
}

func (q *Queue) fail(err error) {
	q.logger.Error("forward queue failed", "err", err)
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.notifyLocked()
	q.mu.Unlock()
}

// Err is the queue's failure, if any: nothing more can be acknowledged.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Len is the number of batches acknowledged and not yet confirmed.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active
}

// Drained waits until every batch enqueued so far is confirmed (or
// rejected) by the engine.
func (q *Queue) Drained(ctx context.Context) error {
	for {
		q.mu.Lock()
		n, ch := q.active, q.changed
		q.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("forward queue still holds %d batches: %w", n, ctx.Err())
		case <-ch:
		}
	}
}

// Close stops the workers; what is not confirmed stays on disk.
func (q *Queue) Close() error {
	q.cancel()
	q.wg.Wait()
	return nil
}
