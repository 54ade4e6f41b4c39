// Package ingest receives Prometheus remote-write 1.0 and 2.0 requests.
//
// Decoding and the status codes senders act on come from Prometheus's own
// write handler (storage/remote); this package puts the metric catalogue and
// the collection policy between that handler and storage, bounds the body
// size, and turns refused series into a 400 that names them. What the
// storage acknowledged (204, or 400 for the refused part only) is in its
// write-ahead log before the answer is sent.
package ingest

import (
	"bytes"
	"fmt"
	"io"
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
	// CollectionNeedsConsent tells which metrics need a consent in force to
	// be collected at all (load curves); CurveCollectable tells whether the
	// RMP's holder has one at that instant.
	CollectionNeedsConsent func(*catalogue.Metric) bool
	CurveCollectable       func(rmp string, t time.Time) bool
	Logger                 *slog.Logger
	Registerer             prometheus.Registerer
}

type metrics struct {
	ingested prometheus.Counter
	refused  *prometheus.CounterVec
	requests *prometheus.CounterVec
}

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
	for _, r := range []string{ReasonNotInCatalogue, ReasonNoConsent, ReasonTooOld, ReasonDuplicate, ReasonHistogram} {
		m.refused.WithLabelValues(r)
	}
	app := &validatingAppendable{next: o.Storage, curveOK: o.CurveCollectable, needsConsent: o.CollectionNeedsConsent, metrics: m}
	prom := remote.NewWriteHandler(o.Logger, prometheus.NewRegistry(), app,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false)
	return &handler{prom: prom, opts: o, metrics: m}
}

type handler struct {
	prom    http.Handler
	opts    Options
	metrics *metrics
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{header: http.Header{}}
	h.serve(rec, r)
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
		http.Error(w, fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", r.ContentLength, h.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.opts.MaxBodyBytes+1))
	if err != nil {
		// The connection broke while the body was coming: the sender will retry.
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if int64(len(body)) > h.opts.MaxBodyBytes {
		http.Error(w, fmt.Sprintf("body exceeds the limit of %d bytes", h.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ctx, refused := withRefusals(r.Context())
	h.prom.ServeHTTP(w, r.WithContext(ctx))

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
