package export

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Prefix is the path the handler serves: Prefix + "{use case}.csv".
const Prefix = "/api/v1/exports/"

// Options of the HTTP handler.
type Options struct {
	Gate     Gate
	Registry func() *registry.Registry
	// Caller returns the authenticated caller of a request, or nil.
	Caller func(*http.Request) *config.Caller
	Logger *slog.Logger
}

// NewHandler serves GET Prefix{use case}.csv. Parameters:
//
//	day=YYYY-MM-DD           the daily batch of one day (ETag, 404 before D+2)
//	from=…&to=…              an inclusive range of days (streamed, cut at D+2)
//	nature=daily|curve       daily energy (default) or load curves (consent)
//	step=30m|10m             step of curves
//	sep=;|,                  separator (default ;)
//	bom=1                    start with a UTF-8 BOM
//
// A gzip-accepting client gets gzip.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &handler{o: o, e: &Exporter{Gate: o.Gate, Registry: o.Registry}}
}

type handler struct {
	o Options
	e *Exporter
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "exports take GET", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	uc, csvExt := strings.CutSuffix(name, ".csv")
	if !ok || !csvExt || strings.Contains(uc, "/") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	spec, format, batch, err := parse(registry.UseCase(strings.ToLower(uc)), r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	caller := h.o.Caller(r)
	spec, err = h.e.Check(caller, spec)
	switch {
	case errors.Is(err, gate.ErrRefused):
		http.Error(w, gate.ErrRefused.Error(), http.StatusForbidden)
		return
	case errors.Is(err, ErrNotPublished):
		// The platform polls: tell it when to come back.
		w.Header().Set("Retry-After", strconv.Itoa(int(spec.From.AddDays(2).Start().Sub(h.e.Gate.Now()).Seconds())+1))
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if batch {
		spec.To = spec.From // Check cut nothing: the day is publishable
	}
	filename := fmt.Sprintf("metergate_%s_%s_%s", spec.UseCase, spec.Nature, spec.From)
	if spec.To != spec.From {
		filename += "_" + spec.To.String()
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/csv; charset=utf-8; header=present")
	hdr.Set("Content-Disposition", `attachment; filename="`+filename+`.csv"`)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Add("Vary", "Accept-Encoding")
	hdr.Add("Vary", "Authorization")
	// What an export holds depends on the caller's token.
	hdr.Set("Cache-Control", "private, no-cache")
	gz := acceptsGzip(r)
	log := h.o.Logger.With("caller", caller.Name, "use_case", spec.UseCase, "nature", spec.Nature, "from", spec.From, "to", spec.To)
	if batch {
		h.serveBatch(w, r, caller, spec, format, gz, log)
		return
	}
	h.serveStream(w, r, caller, spec, format, gz, log)
}

// serveBatch answers the daily batch: built whole (one day is small), so
// that it has an ETag and the same bytes every time.
func (h *handler) serveBatch(w http.ResponseWriter, r *http.Request, c *config.Caller, s Spec, f Format, gz bool, log *slog.Logger) {
	var body bytes.Buffer
	rows, err := h.e.Write(r.Context(), &body, c, s, f)
	if err != nil {
		h.fail(w, r, err, log)
		return
	}
	sum := sha256.Sum256(body.Bytes())
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	if gz {
		// A different representation has a different strong tag.
		etag = etag[:len(etag)-1] + `-gzip"`
	}
	w.Header().Set("ETag", etag)
	if match(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	out := body.Bytes()
	if gz {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb) // no name, no time: the same bytes every time
		_, _ = zw.Write(out)
		_ = zw.Close()
		out = zb.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
	log.Info("export served", "rows", rows, "bytes", len(out), "batch", true)
}

// serveStream writes a range as it is evaluated. The status is sent with
// the first slice, so an error in the first slice is still an error
// status; a later one aborts the connection, so that the client sees a
// broken transfer and never takes a truncated file for a complete one.
func (h *handler) serveStream(w http.ResponseWriter, r *http.Request, c *config.Caller, s Spec, f Format, gz bool, log *slog.Logger) {
	sw := &streamWriter{w: w}
	var out io.Writer = sw
	var zw *gzip.Writer
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
		zw = gzip.NewWriter(sw)
		out = zw
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	rows, err := h.e.Write(r.Context(), &flushWriter{bw: bw, zw: zw, sw: sw}, c, s, f)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		if !sw.started {
			w.Header().Del("Content-Encoding")
			h.fail(w, r, err, log)
			return
		}
		log.Warn("export aborted", "rows", rows, "err", err)
		panic(http.ErrAbortHandler)
	}
	log.Info("export served", "rows", rows, "bytes", sw.n)
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error, log *slog.Logger) {
	switch {
	case errors.Is(err, gate.ErrRefused):
		http.Error(w, gate.ErrRefused.Error(), http.StatusForbidden)
	case r.Context().Err() != nil:
		log.Info("export cancelled by the client", "err", err)
	default:
		log.Error("export failed", "err", err)
		http.Error(w, gate.ErrUnavailable.Error(), http.StatusServiceUnavailable)
	}
}

// streamWriter counts bytes and knows whether the answer has started.
type streamWriter struct {
	w       http.ResponseWriter
	started bool
	n       int64
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.started = true
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

// flushWriter lets Exporter.Write push each slice to the client.
type flushWriter struct {
	bw *bufio.Writer
	zw *gzip.Writer
	sw *streamWriter
}

func (f *flushWriter) Write(p []byte) (int, error) { return f.bw.Write(p) }

func (f *flushWriter) Flush() error {
	if err := f.bw.Flush(); err != nil {
		return err
	}
	if f.zw != nil {
		if err := f.zw.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(f.sw.w).Flush()
}

func parse(uc registry.UseCase, r *http.Request) (Spec, Format, bool, error) {
	q := r.URL.Query()
	for k, v := range q {
		if len(v) > 1 {
			return Spec{}, Format{}, false, fmt.Errorf("parameter %s is given twice", k)
		}
	}
	s := Spec{UseCase: uc, Nature: catalogue.Daily}
	if n := q.Get("nature"); n != "" {
		s.Nature = catalogue.Nature(n)
	}
	if st := q.Get("step"); st != "" {
		d, err := time.ParseDuration(st)
		if err != nil {
			return s, Format{}, false, fmt.Errorf("step: %w", err)
		}
		s.Step = d
	}
	var f Format
	var ok bool
	if f.Comma, ok = ParseComma(q.Get("sep")); !ok {
		return s, f, false, errors.New("sep is ; or ,")
	}
	switch q.Get("bom") {
	case "", "0", "false":
	case "1", "true":
		f.BOM = true
	default:
		return s, f, false, errors.New("bom is 1 or 0")
	}
	day, from, to := q.Get("day"), q.Get("from"), q.Get("to")
	var err error
	switch {
	case day != "" && from == "" && to == "":
		if s.From, err = localday.Parse(day); err != nil {
			return s, f, false, err
		}
		s.To = s.From
		return s, f, true, nil
	case day == "" && from != "" && to != "":
		if s.From, err = localday.Parse(from); err != nil {
			return s, f, false, err
		}
		if s.To, err = localday.Parse(to); err != nil {
			return s, f, false, err
		}
		return s, f, false, nil
	}
	return s, f, false, errors.New("give day=YYYY-MM-DD, or from=YYYY-MM-DD and to=YYYY-MM-DD")
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// match implements If-None-Match (weak comparison, as RFC 9110 asks).
func match(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
