// Package enginestore stands an existing metrics engine (VictoriaMetrics,
// Grafana Mimir, Thanos, Prometheus) behind metergate's storage interfaces:
// writes are spooled on local disk and forwarded by remote-write, reads go
// to the engine's Prometheus-compatible APIs and come back as raw samples,
// so the privacy gate computes exactly what it computes over the embedded
// TSDB.
//
// A metergate server over an engine holds no meter data: only the forward
// queue of batches it acknowledged and the engine has not yet confirmed.
package enginestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
)

// Kind is the engine's product; it decides the tenant header and how raw
// samples are read back.
type Kind string

// Supported engines.
const (
	VictoriaMetrics Kind = "victoriametrics" // single node or cluster (vminsert/vmselect)
	Prometheus      Kind = "prometheus"      // --web.enable-remote-write-receiver
	Mimir           Kind = "mimir"
	Thanos          Kind = "thanos" // Receive for writes, Query for reads
)

// ReadProtocol is how raw samples are read from the engine.
type ReadProtocol string

// Read protocols.
const (
	// Export is VictoriaMetrics' /api/v1/export: JSON lines of raw samples.
	Export ReadProtocol = "export"
	// RemoteRead is Prometheus's /api/v1/read (prompb.ReadRequest), also
	// served by Mimir.
	RemoteRead ReadProtocol = "remote_read"
	// QueryAPI is /api/v1/query of a range selector, which returns the raw
	// samples of the window: the only raw read Thanos Query offers over
	// HTTP.
	QueryAPI ReadProtocol = "query_api"
)

// DefaultReadProtocol is the read protocol of each engine.
func DefaultReadProtocol(k Kind) ReadProtocol {
	switch k {
	case VictoriaMetrics:
		return Export
	case Thanos:
		return QueryAPI
	default:
		return RemoteRead
	}
}

// TenantHeader is the HTTP header carrying the tenant for engines that take
// it in a header; VictoriaMetrics cluster takes it in the URL path instead.
func TenantHeader(k Kind) string {
	switch k {
	case Mimir:
		return "X-Scope-OrgID"
	case Thanos:
		return "THANOS-TENANT"
	}
	return ""
}

// Options say where the engine is and how to talk to it.
type Options struct {
	Kind Kind
	// WriteURL is the engine's remote-write endpoint, e.g.
	// http://vminsert:8480/insert/0/prometheus/api/v1/write.
	WriteURL string
	// ReadURL is the base of the engine's Prometheus HTTP API (the part
	// before /api/v1/...), e.g. http://vmselect:8481/select/0/prometheus,
	// http://prometheus:9090, http://mimir/prometheus.
	ReadURL string
	// ReadProtocol overrides DefaultReadProtocol(Kind).
	ReadProtocol ReadProtocol
	// Tenant is sent in TenantHeader(Kind); it must be empty for engines
	// whose tenant is in the URL or that have none.
	Tenant string
	// Headers are added to every request (authentication of a gateway).
	Headers map[string]string
	// Timeout bounds one request to the engine.
	Timeout time.Duration
	// QueueDir holds the batches acknowledged to senders and not yet
	// confirmed by the engine.
	QueueDir string
	// QueueMaxBytes bounds the queue on disk; beyond it writes fail with a
	// 5xx, so that senders keep their data and retry. 0 means 1 GiB.
	QueueMaxBytes int64
	// Concurrency is the number of batches in flight to the engine; 0 means 4.
	Concurrency int
	// MinBackoff and MaxBackoff bound the wait between retries of a batch;
	// zero means 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

func (o *Options) check() error {
	switch o.Kind {
	case VictoriaMetrics, Prometheus, Mimir, Thanos:
	default:
		return fmt.Errorf("unknown engine kind %q (victoriametrics, prometheus, mimir or thanos)", o.Kind)
	}
	if o.ReadProtocol == "" {
		o.ReadProtocol = DefaultReadProtocol(o.Kind)
	}
	switch o.ReadProtocol {
	case Export, RemoteRead, QueryAPI:
	default:
		return fmt.Errorf("unknown read protocol %q (export, remote_read or query_api)", o.ReadProtocol)
	}
	for name, u := range map[string]string{"write_url": o.WriteURL, "read_url": o.ReadURL} {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%s %q is not an http(s) URL", name, u)
		}
	}
	if o.Tenant != "" && TenantHeader(o.Kind) == "" {
		return fmt.Errorf("%s takes no tenant header: put the tenant in write_url and read_url (/insert/<tenant>/..., /select/<tenant>/...)", o.Kind)
	}
	if o.QueueDir == "" {
		return errors.New("a queue directory is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.QueueMaxBytes <= 0 {
		o.QueueMaxBytes = 1 << 30
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	return nil
}

// headers are the headers of every request: the configured ones and the
// tenant.
func (o *Options) headers() map[string]string {
	h := map[string]string{}
	for k, v := range o.Headers {
		h[k] = v
	}
	if o.Tenant != "" {
		h[TenantHeader(o.Kind)] = o.Tenant
	}
	return h
}

// Store is an engine behind storage.AppendableV2 and storage.Queryable; it
// satisfies pkg/store.Store.
type Store struct {
	storage.Queryable
	queue *Queue
	query *Evaluator
}

// Open checks the options, opens the forward queue (resuming the batches
// left by a previous run) and starts forwarding.
func Open(o Options, logger *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("remote storage: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	var (
		q   storage.Queryable
		err error
	)
	rt := &headerTransport{headers: o.headers(), next: http.DefaultTransport}
	labelsAPI, err := newLabelsAPI(o.ReadURL, rt)
	if err != nil {
		return nil, err
	}
	switch o.ReadProtocol {
	case Export:
		q = &exportQueryable{base: strings.TrimSuffix(o.ReadURL, "/"), client: &http.Client{Transport: rt, Timeout: o.Timeout}, labels: labelsAPI}
	case RemoteRead:
		q, err = newRemoteReadQueryable(o, labelsAPI)
	case QueryAPI:
		q, err = newQueryAPIQueryable(o.ReadURL, rt, o.Timeout, labelsAPI)
	}
	if err != nil {
		return nil, err
	}
	raw, err := newQueryAPIQueryable(o.ReadURL, rt, o.Timeout, labelsAPI)
	if err != nil {
		return nil, err
	}
	queue, err := OpenQueue(o, logger.With("component", "forward"), reg)
	if err != nil {
		return nil, err
	}
	return &Store{Queryable: q, queue: queue, query: newEvaluator(o, rt, raw, reg)}, nil
}

// Evaluator is the engine's query API, through which the gate has the
// engine compute what it publishes (docs/scaling.md).
func (s *Store) Evaluator() *Evaluator { return s.query }

// AppenderV2 collects a request's samples; Commit returns once the batch is
// on disk in the forward queue.
func (s *Store) AppenderV2(context.Context) storage.AppenderV2 { return newAppender(s.queue) }

// Queue is the forward queue (tests wait for it to drain).
func (s *Store) Queue() *Queue { return s.queue }

// HeadSeries is zero: an engine-backed server holds no series in memory.
func (s *Store) HeadSeries() uint64 { return 0 }

// Ready reports whether writes can be acknowledged, i.e. whether the queue
// directory works. An unreachable engine does not make the server unready:
// writes queue on disk and a load balancer should keep sending them.
func (s *Store) Ready(context.Context) error { return s.queue.Err() }

// Close stops forwarding; batches not yet confirmed stay on disk and are
// sent by the next run.
func (s *Store) Close() error { return s.queue.Close() }

// headerTransport adds fixed headers (tenant, gateway credentials).
type headerTransport struct {
	headers map[string]string
	next    http.RoundTripper
}

func (t *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(t.headers) == 0 {
		return t.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	for k, v := range t.headers {
		r.Header.Set(k, v)
	}
	return t.next.RoundTrip(r)
}
