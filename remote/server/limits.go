package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/remote/ingest"
)

// Names of the limits counted in metergate_limit_hits_total, besides the
// write limits of package ingest.
const (
	LimitRate              = "http_rate_limit"
	LimitConcurrentQueries = "query_max_concurrent"
	LimitQueryTimeout      = "query_timeout"
	LimitQueryMaxSamples   = "query_max_samples"
)

// limits are the server's protections against greedy callers.
type limits struct {
	hits    *prometheus.CounterVec
	cut     prometheus.Counter
	rate    *rateLimiter // nil: no rate limit
	queries chan struct{}
	conns   sync.Map // net.Conn -> last http.ConnState
}

func newLimits(cfg *config.Config, reg prometheus.Registerer) *limits {
	l := &limits{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metergate_limit_hits_total",
			Help: "Requests (or series, for write_max_new_series_per_day) stopped by a configured limit, by limit.",
		}, []string{"limit"}),
		cut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metergate_http_connections_cut_total",
			Help: "Connections closed in the middle of a request: slow clients cut by the http timeouts, or clients that went away.",
		}),
	}
	reg.MustRegister(l.hits, l.cut)
	for _, name := range []string{LimitRate, LimitConcurrentQueries, LimitQueryTimeout, LimitQueryMaxSamples,
		ingest.LimitBodyBytes, ingest.LimitSamplesPerRequest, ingest.LimitNewSeriesPerDay} {
		l.hits.WithLabelValues(name)
	}
	if cfg.HTTP.RateLimit > 0 {
		l.rate = newRateLimiter(cfg.HTTP.RateLimit, cfg.HTTP.Burst, time.Now)
	}
	if cfg.Query.MaxConcurrent > 0 {
		l.queries = make(chan struct{}, cfg.Query.MaxConcurrent)
	}
	return l
}

// limitRate answers 429 with Retry-After when the caller of the request has
// spent its budget. Requests without a caller are not counted: they can
// only reach the health and metrics endpoints or get 401.
func (l *limits) limitRate(w http.ResponseWriter, c *config.Caller) bool {
	if l.rate == nil || c == nil {
		return true
	}
	ok, wait := l.rate.allow(c.Name)
	if ok {
		return true
	}
	l.hits.WithLabelValues(LimitRate).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	http.Error(w, fmt.Sprintf("too many requests for caller %s (http.rate_limit): retry later", c.Name), http.StatusTooManyRequests)
	return false
}

// boundQueries lets at most query.max_concurrent queries evaluate at once.
// One more is answered 503 at once, with Retry-After, rather than queued:
// a queue would hold connections and memory while the engine is saturated.
func (l *limits) boundQueries(next http.Handler) http.Handler {
	if l.queries == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case l.queries <- struct{}{}:
			defer func() { <-l.queries }()
			next.ServeHTTP(w, r)
		default:
			l.hits.WithLabelValues(LimitConcurrentQueries).Inc()
			w.Header().Set("Retry-After", "1")
			writeAPIJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "error", "errorType": "unavailable",
				"error": fmt.Sprintf("too many concurrent queries (query.max_concurrent = %d): retry later", cap(l.queries))})
		}
	})
}

// connState counts connections closed while a request was being read or
// answered: that is how the http timeouts cut a slow client.
func (l *limits) connState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateClosed, http.StateHijacked:
		prev, _ := l.conns.LoadAndDelete(c)
		if prev == http.StateActive && state == http.StateClosed {
			l.cut.Inc()
		}
	default:
		l.conns.Store(c, state)
	}
}

// rateLimiter is a token bucket per key: rate tokens a second, at most
// burst in the bucket.
type rateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// allow takes a token from key's bucket, or tells how long until one is there.
func (r *rateLimiter) allow(key string) (bool, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b, ok := r.buckets[key]
	if !ok {
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[key] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / r.rate * float64(time.Second))
}

// seedSeries tells the new-series limiter (if any) every series the TSDB
// holds, in its head and in its blocks, so that a restart does not count
// them as new; and the WAL guard the head's series, whose records the WAL
// replay has just read.
func seedSeries(ctx context.Context, db *tsdb.DB, lim *ingest.SeriesLimiter, guard *ingest.WALGuard) (int, error) {
	readers := []tsdb.IndexReader{}
	ir, err := db.Head().Index()
	if err != nil {
		return 0, fmt.Errorf("reading the head index: %w", err)
	}
	readers = append(readers, ir)
	for _, b := range db.Blocks() {
		if lim == nil {
			break // the blocks only matter to the limiter
		}
		bir, err := b.Index()
		if err != nil {
			return 0, fmt.Errorf("reading block %s index: %w", b.Meta().ULID, err)
		}
		readers = append(readers, bir)
	}
	n := 0
	var builder labels.ScratchBuilder
	for i, r := range readers {
		defer r.Close()
		name, value := index.AllPostingsKey()
		p, err := r.Postings(ctx, name, value)
		if err != nil {
			return n, fmt.Errorf("listing series: %w", err)
		}
		for p.Next() {
			if err := r.Series(p.At(), &builder, nil); err != nil {
				return n, fmt.Errorf("reading series: %w", err)
			}
			h := builder.Labels().Hash()
			if lim != nil {
				lim.Seed(h)
			}
			if i == 0 && guard != nil {
				guard.Seed(h, p.At()) // head postings are head series references
			}
			n++
		}
		if err := p.Err(); err != nil {
			return n, fmt.Errorf("listing series: %w", err)
		}
	}
	return n, nil
}

// boundQueries applies query.max_concurrent to the endpoints that evaluate
// PromQL.
func (s *Server) boundQueries(next http.Handler) http.Handler {
	bounded := s.limits.boundQueries(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/query", "/api/v1/query_range":
			bounded.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// countQueryLimit counts a query stopped by query.timeout or
// query.max_samples (the API answers them 503 and 422).
func countQueryLimit(hits *prometheus.CounterVec, err error) {
	var tooMany promql.ErrTooManySamples
	var timeout promql.ErrQueryTimeout
	switch {
	case hits == nil || err == nil:
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		hits.WithLabelValues(LimitQueryTimeout).Inc()
	case errors.As(err, &tooMany):
		hits.WithLabelValues(LimitQueryMaxSamples).Inc()
	}
}
