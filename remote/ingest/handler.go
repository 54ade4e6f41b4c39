// Package ingest receives Prometheus remote-write 1.0 and 2.0 requests.
//
// The status codes senders act on come from Prometheus's own write handler
// (storage/remote), which decodes remote-write 2.0; 1.0, the shape of every
// live sender, is decoded by VictoriaMetrics' allocation-free unmarshaler
// (lib/prompb), with the same answers (v1.go, v1wire.go). This package puts the metric catalogue and
// the collection policy between that handler and storage, bounds the body
// size, and turns refused series into a 400 that names them. What the
// storage acknowledged (204, or 400 for the refused part only) is in its
// write-ahead log before the answer is sent.
package ingest

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"

	"github.com/metergate/metergate/pkg/catalogue"
)

// Options of the remote-write handler.
type Options struct {
	Storage storage.AppendableV2
	// MaxBodyBytes bounds the compressed body; a larger one gets 413.
	MaxBodyBytes int64
	// MaxSamplesPerRequest bounds the samples (and histograms) of one
	// request; a larger one gets 413 and nothing of it is stored, so that a
	// sender splits its batches. 0 means no bound.
	MaxSamplesPerRequest int
	// Series, when set, bounds the new series each sender creates per day;
	// Sender names the sender of a request for it.
	Series *SeriesLimiter
	Sender func(*http.Request) string
	// WAL, when set, runs alone the requests that touch series whose WAL
	// record may not be written yet (see WALGuard). Set it for the
	// embedded TSDB, seeded with the head's series.
	WAL *WALGuard
	// LimitHits, when set, counts the requests and series each limit
	// stopped, by limit (LimitBodyBytes, LimitSamplesPerRequest,
	// LimitNewSeriesPerDay).
	LimitHits *prometheus.CounterVec
	// CollectionNeedsConsent tells which metrics need a consent in force to
	// be collected at all (load curves); CurveCollectable tells whether the
	// RMP's holder has one at that instant.
	CollectionNeedsConsent func(*catalogue.Metric) bool
	CurveCollectable       func(rmp string, t time.Time) bool
	// Sync, when set, makes what the request committed durable (the
	// TSDB's write-ahead logs fsynced: store.WALSyncer) before the answer
	// leaves; its error answers 500, which the sender retries.
	Sync       func() error
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

type metrics struct {
	ingested prometheus.Counter
	refused  *prometheus.CounterVec
	requests *prometheus.CounterVec
	// limitHits is shared with the server's other limits.
	limitHits *prometheus.CounterVec
}

// Names of the limits, as counted in metergate_limit_hits_total.
const (
	LimitBodyBytes         = "write_max_body_bytes"
	LimitSamplesPerRequest = "write_max_samples_per_request"
	LimitNewSeriesPerDay   = "write_max_new_series_per_day"
)

// MaxRefusalsListed bounds how many refused series a 400 names.
const MaxRefusalsListed = 20

// NewHandler returns the /api/v1/write handler.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.CollectionNeedsConsent == nil {
		o.CollectionNeedsConsent = func(m *catalogue.Metric) bool { return m.Nature == catalogue.Curve }
	}
	if o.CurveCollectable == nil {
		o.CurveCollectable = func(string, time.Time) bool { return false }
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 32 << 20
	}
	m := &metrics{
		ingested: promauto.With(o.Registerer).NewCounter(prometheus.CounterOpts{
			Name: "metergate_samples_ingested_total",
			Help: "Samples committed to storage through remote-write.",
		}),
		refused: promauto.With(o.Registerer).NewCounterVec(prometheus.CounterOpts{
			Name: "metergate_samples_refused_total",
			Help: "Samples refused at ingestion, by reason.",
		}, []string{"reason"}),
		requests: promauto.With(o.Registerer).NewCounterVec(prometheus.CounterOpts{
			Name: "metergate_write_requests_total",
			Help: "Remote-write requests by HTTP status code.",
		}, []string{"code"}),
	}
	if o.LimitHits == nil {
		o.LimitHits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unregistered"}, []string{"limit"})
	}
	if o.Sender == nil {
		o.Sender = func(*http.Request) string { return "" }
	}
	m.limitHits = o.LimitHits
	for _, r := range []string{ReasonNotInCatalogue, ReasonNoConsent, ReasonTooOld, ReasonDuplicate, ReasonHistogram, ReasonSeriesLimit, ReasonInvalidLabels} {
		m.refused.WithLabelValues(r)
	}
	app := &validatingAppendable{next: o.Storage, valid: newValidCache(), curveOK: o.CurveCollectable, needsConsent: o.CollectionNeedsConsent, metrics: m,
		maxSamples: o.MaxSamplesPerRequest, series: o.Series, wal: o.WAL}
	logger := slog.New(quietRetries{o.Logger.Handler()})
	prom := remote.NewWriteHandler(logger, prometheus.NewRegistry(), app,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false)
	return &handler{prom: prom, v1: newV1Handler(app, logger), opts: o, metrics: m}
}

type handler struct {
	prom    http.Handler // Prometheus's write handler: remote-write 2.0
	v1      http.Handler // remote-write 1.0 (v1.go)
	opts    Options
	metrics *metrics
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{header: http.Header{}}
	h.serve(rec, r)
	if h.opts.Sync != nil && (rec.code/100 == 2 || rec.code == http.StatusBadRequest) {
		// A 400 may have stored the request's other series.
		if err := h.opts.Sync(); err != nil {
			h.opts.Logger.Error("remote-write: committed samples could not be made durable; answering 500", "err", err)
			rec = &recorder{header: http.Header{}}
			http.Error(rec, "committed samples could not be made durable: "+err.Error(), http.StatusInternalServerError)
		}
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.code)
	_, _ = w.Write(rec.body.Bytes())
	h.metrics.requests.WithLabelValues(strconv.Itoa(rec.code)).Inc()
}

func (h *handler) serve(w *recorder, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "remote-write takes POST", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		h.metrics.limitHits.WithLabelValues(LimitBodyBytes).Inc()
		http.Error(w, fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", r.ContentLength, h.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
		return
	}
	body, release, err := readBody(r.Body, r.ContentLength, h.opts.MaxBodyBytes)
	if err != nil {
		// The connection broke while the body was coming: the sender will retry.
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if int64(len(body)) > h.opts.MaxBodyBytes {
		h.metrics.limitHits.WithLabelValues(LimitBodyBytes).Inc()
		http.Error(w, fmt.Sprintf("body exceeds the limit of %d bytes", h.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
		release()
		return
	}
	refused := h.write(w, r, body, true)
	if refused.needsExclusive {
		// Rolled back: run it again with no other request appending.
		*w = recorder{header: http.Header{}}
		refused = h.write(w, r, body, false)
	}
	release() // nothing refers to the body past the write

	if refused.tooMany {
		// The appender stopped at the limit and the handler rolled back:
		// nothing is stored. 413 tells the sender to split, not to retry.
		h.metrics.limitHits.WithLabelValues(LimitSamplesPerRequest).Inc()
		w.body.Reset()
		w.header = http.Header{}
		http.Error(w, fmt.Sprintf("request has more than %d samples (write.max_samples_per_request); nothing of it is stored: send smaller batches", h.opts.MaxSamplesPerRequest), http.StatusRequestEntityTooLarge)
		return
	}

	if len(refused.order) == 0 || w.code >= 300 {
		return
	}
	// The valid series are committed; the sender must not retry, and must
	// hear which series were refused and why.
	var b strings.Builder
	fmt.Fprintf(&b, "%d samples of %d series refused; the other series of the request are stored:\n", refused.samples, len(refused.order))
	for i, s := range refused.order {
		if i == MaxRefusalsListed {
			fmt.Fprintf(&b, "... and %d more series\n", len(refused.order)-i)
			break
		}
		fmt.Fprintf(&b, "%s\n", s)
	}
	h.opts.Logger.Warn("remote-write series refused", "series", len(refused.order), "samples", refused.samples, "first", refused.order[0])
	w.body.Reset()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusBadRequest)
	w.body.WriteString(b.String())
}

// write runs the request through the handler of its version, alongside
// other requests (shared) or alone.
func (h *handler) write(w *recorder, r *http.Request, body []byte, shared bool) *refusals {
	ctx, refused := withRefusals(r.Context())
	refused.sender = h.opts.Sender(r)
	refused.shared = shared
	if g := h.opts.WAL; g != nil {
		if shared {
			g.run.RLock()
			defer g.run.RUnlock()
		} else {
			g.run.Lock()
			defer g.run.Unlock()
		}
	}
	r.Body = newRequestBody(body)
	inner := h.prom
	if isV1(r.Header.Get("Content-Type")) {
		inner = h.v1
	}
	inner.ServeHTTP(w, r.WithContext(ctx))
	return refused
}

// recorder holds the inner handler's answer until refusals are known.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header  { return r.header }
func (r *recorder) WriteHeader(code int) { r.code = code }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
