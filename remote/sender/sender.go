// Package sender is a Prometheus remote-write 1.0 client that behaves like a
// real sender: snappy-compressed protobuf WriteRequests, batching, a fixed
// number of shards chosen by series hash (so each series keeps its order),
// and retries with exponential backoff and jitter on the errors a receiver
// can recover from (5xx, 429, network). Other 4xx answers mean the receiver
// will never accept the batch: it is logged and counted as dropped.
package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// Config describes where and how to send.
type Config struct {
	URL   string // e.g. http://localhost:9201/api/v1/write
	Token string // bearer token; empty sends no Authorization header

	// MaxSamplesPerRequest bounds a request's size (default 10,000).
	MaxSamplesPerRequest int
	// Shards is the number of concurrent senders (default 4). A series
	// always goes through the same shard, so its samples arrive in order.
	Shards int
	// BatchDeadline sends a partial batch after this long without reaching
	// MaxSamplesPerRequest (default 1 s), so trickling live data is not held.
	BatchDeadline time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries (defaults 50 ms and 5 s). MaxRetries is the number of retries
	// of one request before its samples are dropped (default 10; negative
	// means retry until the context ends).
	MinBackoff, MaxBackoff time.Duration
	MaxRetries             int
	// Timeout of one HTTP request (default 30 s).
	Timeout time.Duration
	Client  *http.Client // default: a client with Timeout and the TLS files below
	// CAFile verifies an HTTPS receiver's certificate (default: the
	// system's roots); CertFile and KeyFile are the sender's own
	// certificate, for a receiver that asks for one.
	CAFile, CertFile, KeyFile string
	Logger                    *slog.Logger // default: slog.Default()
}

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("remote-write URL is required")
	}
	if c.MaxSamplesPerRequest <= 0 {
		c.MaxSamplesPerRequest = 10_000
	}
	if c.Shards <= 0 {
		c.Shards = 4
	}
	if c.BatchDeadline <= 0 {
		c.BatchDeadline = time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 10
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Client == nil {
		tlsConfig, err := c.tlsConfig()
		if err != nil {
			return err
		}
		c.Client = &http.Client{Timeout: c.Timeout}
		if tlsConfig != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = tlsConfig
			c.Client.Transport = tr
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// tlsConfig builds the client's TLS configuration from the files, or nil.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" && c.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Stats are cumulative counters since the sender was created.
type Stats struct {
	SamplesSent    int64 // samples in requests the receiver acknowledged (2xx)
	Requests       int64 // HTTP requests made, retries included
	Retries        int64 // requests repeated after a recoverable error
	SamplesDropped int64 // samples given up: refused with 4xx or retries exhausted
}

// Sender sends series over remote-write. It is safe for concurrent use.
type Sender struct {
	cfg    Config
	shards []*shard
	seed   maphash.Seed
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, requests, retries, dropped atomic.Int64
}

// New starts a sender's shards; call Close to flush and stop them.
func New(cfg Config) (*Sender, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{cfg: cfg, seed: maphash.MakeSeed(), cancel: cancel}
	s.shards = make([]*shard, cfg.Shards)
	for i := range s.shards {
		sh := &shard{s: s, in: make(chan shardItem, 16)}
		s.shards[i] = sh
		s.wg.Add(1)
		go func() { defer s.wg.Done(); sh.run(ctx) }()
	}
	return s, nil
}

// Stats returns the counters so far.
func (s *Sender) Stats() Stats {
	return Stats{SamplesSent: s.sent.Load(), Requests: s.requests.Load(), Retries: s.retries.Load(), SamplesDropped: s.dropped.Load()}
}

// Write queues series for sending. The sender keeps the slices: the caller
// must not modify them afterwards. Labels must be sorted by name. Write
// blocks while the shards' queues are full (back-pressure).
func (s *Sender) Write(ctx context.Context, series []prompb.TimeSeries) error {
	if len(series) == 0 {
		return nil
	}
	parts := make([][]prompb.TimeSeries, len(s.shards))
	for i := range series {
		k := s.shardOf(series[i].Labels)
		if parts[k] == nil {
			parts[k] = make([]prompb.TimeSeries, 0, len(series)/len(s.shards)+1)
		}
		parts[k] = append(parts[k], series[i])
	}
	for k, p := range parts {
		if len(p) == 0 {
			continue
		}
		select {
		case s.shards[k].in <- shardItem{series: p}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Flush returns when every series written before it has been sent (or
// dropped), or when ctx ends.
func (s *Sender) Flush(ctx context.Context) error {
	acks := make([]chan struct{}, len(s.shards))
	for i, sh := range s.shards {
		acks[i] = make(chan struct{})
		select {
		case sh.in <- shardItem{flushed: acks[i]}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, a := range acks {
		select {
		case <-a:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close flushes what is queued (giving up when ctx ends, which also aborts
// requests in flight) and stops the shards.
func (s *Sender) Close(ctx context.Context) error {
	err := s.Flush(ctx)
	s.cancel()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("flushing remote-write queue: %w", err)
	}
	return nil
}

func (s *Sender) shardOf(ls []prompb.Label) int {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, l := range ls {
		h.WriteString(l.Name)
		h.WriteByte(0xff)
		h.WriteString(l.Value)
		h.WriteByte(0xfe)
	}
	return int(h.Sum64() % uint64(len(s.shards)))
}

type shardItem struct {
	series  []prompb.TimeSeries
	flushed chan struct{} // non-nil: a flush request, closed once done
}

// shard owns one queue: it batches what arrives and sends one request at a
// time, so the order of each of its series is kept.
type shard struct {
	s       *Sender
	in      chan shardItem
	pending []prompb.TimeSeries
	samples int
	wr      prompb.WriteRequest
	raw     []byte
	comp    []byte
}

func (sh *shard) run(ctx context.Context) {
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	max := sh.s.cfg.MaxSamplesPerRequest
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-sh.in:
			if it.flushed != nil {
				sh.sendPending(ctx, true)
				close(it.flushed)
				continue
			}
			wasEmpty := sh.samples == 0
			for _, ts := range it.series {
				sh.pending = append(sh.pending, ts)
				sh.samples += len(ts.Samples)
			}
			if sh.samples >= max {
				sh.sendPending(ctx, false)
			}
			if wasEmpty && sh.samples > 0 {
				deadline.Reset(sh.s.cfg.BatchDeadline)
			}
		case <-deadline.C:
			sh.sendPending(ctx, true)
		}
	}
}

// sendPending sends full requests from the pending series; with all it also
// sends the last, partial one. A series longer than the room left in a
// request is split; its parts go in order.
func (sh *shard) sendPending(ctx context.Context, all bool) {
	max := sh.s.cfg.MaxSamplesPerRequest
	for sh.samples >= max || (all && sh.samples > 0) {
		batch := make([]prompb.TimeSeries, 0, len(sh.pending))
		room := max
		i := 0
		for ; i < len(sh.pending) && room > 0; i++ {
			ts := sh.pending[i]
			if len(ts.Samples) > room {
				head := ts
				head.Samples = ts.Samples[:room:room]
				batch = append(batch, head)
				sh.pending[i].Samples = ts.Samples[room:]
				room = 0
				break
			}
			batch = append(batch, ts)
			room -= len(ts.Samples)
		}
		sh.pending = sh.pending[i:]
		n := max - room
		sh.samples -= n
		sh.send(ctx, batch, n)
	}
	if sh.samples == 0 {
		sh.pending = sh.pending[:0:0] // let the sent series be collected
	}
}

func (sh *shard) send(ctx context.Context, batch []prompb.TimeSeries, samples int) {
	sh.wr.Timeseries = batch
	size := sh.wr.Size()
	if cap(sh.raw) < size {
		sh.raw = make([]byte, size)
	}
	sh.raw = sh.raw[:size]
	if _, err := sh.wr.MarshalToSizedBuffer(sh.raw); err != nil {
		sh.s.cfg.Logger.Error("encoding remote-write request", "err", err, "samples", samples)
		sh.s.dropped.Add(int64(samples))
		return
	}
	sh.wr.Timeseries = nil
	sh.comp = snappy.Encode(sh.comp[:cap(sh.comp)], sh.raw)
	sh.s.post(ctx, sh.comp, samples)
}

// errRecoverable marks an answer worth retrying.
type errRecoverable struct {
	err        error
	retryAfter time.Duration
}

func (e *errRecoverable) Error() string { return e.err.Error() }

// post sends one body, retrying recoverable failures with backoff.
func (s *Sender) post(ctx context.Context, body []byte, samples int) {
	log := s.cfg.Logger
	for attempt := 0; ; attempt++ {
		s.requests.Add(1)
		err := s.postOnce(ctx, body)
		if err == nil {
			s.sent.Add(int64(samples))
			return
		}
		if ctx.Err() != nil {
			return // shutting down: nothing was lost that Close's caller did not give up
		}
		var rec *errRecoverable
		if !errors.As(err, &rec) {
			log.Warn("remote-write refused a batch; dropping it", "err", err, "samples", samples)
			s.dropped.Add(int64(samples))
			return
		}
		if s.cfg.MaxRetries >= 0 && attempt >= s.cfg.MaxRetries {
			log.Error("remote-write retries exhausted; dropping batch", "err", err, "samples", samples, "attempts", attempt+1)
			s.dropped.Add(int64(samples))
			return
		}
		wait := s.backoff(attempt)
		if rec.retryAfter > wait {
			wait = min(rec.retryAfter, s.cfg.MaxBackoff)
		}
		log.Debug("remote-write failed; retrying", "err", err, "attempt", attempt+1, "wait", wait)
		s.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is MinBackoff·2^attempt capped at MaxBackoff, with "equal jitter":
// a random wait in [d/2, d], so shards that failed together do not retry in
// lockstep.
func (s *Sender) backoff(attempt int) time.Duration {
	d := s.cfg.MinBackoff << min(attempt, 30)
	if d <= 0 || d > s.cfg.MaxBackoff {
		d = s.cfg.MaxBackoff
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

func (s *Sender) postOnce(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building remote-write request: %w", err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "metergate-simulator")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return &errRecoverable{err: fmt.Errorf("posting to %s: %w", s.cfg.URL, err)}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("remote-write answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return &errRecoverable{err: err, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return err
}

// retryAfter reads a Retry-After header given in seconds (the HTTP-date
// form is rare from remote-write receivers and is ignored).
func retryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}
