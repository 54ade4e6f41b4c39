package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	vmprompb "github.com/VictoriaMetrics/VictoriaMetrics/lib/prompb"
	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// Remote-write 1.0 is stored by v1Writer, decoded by VictoriaMetrics'
// allocation-free WriteRequest unmarshaler (lib/prompb: label names and
// values stay strings over the decompressed body, samples go to pooled
// slices), with pooled buffers for the body and its decompression; 2.0
// stays with Prometheus's write handler. Prometheus's handler remains the
// reference for 1.0 too: the HTTP side is the very same code (remoteapi's
// handler: content type, 415, the answer and its headers), and
// v1Writer.Store does what the 1.0 branch of Prometheus's writeHandler.Store
// does (storage/remote/write_handler.go, v0.316.0): the same label checks,
// the same time limit, the same order of appends, the same status for each
// error. A request VictoriaMetrics' unmarshaler would decode differently
// from Prometheus's generated one (native histograms, which it turns into
// bucket series; exemplars, which it drops) or refuses is decoded by the
// generated one instead (v1wire.go). The tests of this package and of
// remote/server run both versions through the same cases.

// maxDecodedSize is remoteapi's bound on a decompressed body (32 MiB).
const maxDecodedSize = 32 << 20

// maxAheadTime is how far in the future Prometheus's handler accepts a
// sample (remote.maxAheadTime): further is ErrOutOfBounds, and the request
// fails with 400.
const maxAheadTime = 10 * time.Minute

// maxPooledBuffer bounds the buffers kept for the next request; a rare
// large body does not stay in memory.
const maxPooledBuffer = 8 << 20

var bufPool sync.Pool // *[]byte

// getBuf returns a pooled buffer of length n.
func getBuf(n int) *[]byte {
	b, _ := bufPool.Get().(*[]byte)
	if b == nil {
		b = new([]byte)
	}
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		bufPool.Put(b)
	}
}

// readBody reads at most limit+1 bytes of r into a pooled buffer; release
// gives the buffer back once nothing refers to it any more.
func readBody(r io.Reader, contentLength, limit int64) (body []byte, release func(), err error) {
	size := 64 << 10
	if contentLength > 0 && contentLength <= limit {
		size = int(contentLength) + 1 // +1: the read that meets EOF needs room
	}
	buf := getBuf(size)
	b := (*buf)[:0]
	lr := io.LimitReader(r, limit+1)
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, len(b))
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			putBuf(buf)
			return nil, nil, err
		}
	}
	*buf = b
	return b, func() { putBuf(buf) }, nil
}

// requestBody hands the bytes already read to the handler behind: an
// io.Reader for Prometheus's, the bytes themselves for the 1.0 path.
type requestBody struct {
	*bytes.Reader
	b []byte
}

func newRequestBody(b []byte) *requestBody { return &requestBody{Reader: bytes.NewReader(b), b: b} }

func (*requestBody) Close() error { return nil }

// bodyBytes returns the body of r without copying it when it is a
// requestBody.
func bodyBytes(r *http.Request, limit int64) ([]byte, error) {
	if b, ok := r.Body.(*requestBody); ok {
		return b.b, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, limit+1))
}

// decompress is remoteapi.SnappyDecodeMiddleware, the same checks and
// answers, decoding into a pooled buffer instead of a new one.
func decompress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
			http.Error(w, fmt.Sprintf("%v encoding (compression) is not accepted by this server; only %v is acceptable", enc, remoteapi.SnappyBlockCompression), http.StatusUnsupportedMediaType)
			return
		}
		compressed, err := bodyBytes(r, maxDecodedSize)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(compressed) > maxDecodedSize {
			http.Error(w, fmt.Sprintf("request body exceeds the %v bytes limit", maxDecodedSize), http.StatusRequestEntityTooLarge)
			return
		}
		n, err := snappy.DecodedLen(compressed)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if n > maxDecodedSize {
			http.Error(w, fmt.Sprintf("decoded size exceeds the %v bytes limit", maxDecodedSize), http.StatusBadRequest)
			return
		}
		buf := getBuf(n)
		defer putBuf(buf)
		raw, err := snappy.Decode(*buf, compressed)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = newRequestBody(raw)
		r.Header.Del("Content-Encoding")
		next.ServeHTTP(w, r)
	})
}

// newV1Handler returns the handler of remote-write 1.0 requests: remoteapi's
// HTTP side with v1Writer as its storage.
func newV1Handler(app *validatingAppendable, logger *slog.Logger) http.Handler {
	return remoteapi.NewWriteHandler(&v1Writer{app: app, logger: logger},
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType},
		remoteapi.WithWriteHandlerLogger(logger), remoteapi.WithWriteHandlerMiddlewares(decompress))
}

// isV1 tells whether remoteapi reads the content type as remote-write 1.0.
func isV1(contentType string) bool {
	if contentType == "" {
		return true // remoteapi's default
	}
	t, err := remoteapi.ParseProtoMsg(contentType)
	return err == nil && t == remoteapi.WriteV1MessageType
}

type v1Writer struct {
	app    *validatingAppendable
	logger *slog.Logger
}

// v1State is the scratch space of one request, pooled.
type v1State struct {
	b         labels.ScratchBuilder
	ls        labels.Labels
	eb        labels.ScratchBuilder
	exemplars []exemplar.Exemplar
	// The label fields of the series as sent (scanV1).
	wires [][]byte
	// A series of a request decoded by the generated code (v1wire.go).
	labels  []vmprompb.Label
	samples []vmprompb.Sample
}

var v1States = sync.Pool{New: func() any { return &v1State{b: labels.NewScratchBuilder(16), eb: labels.NewScratchBuilder(4)} }}

// Store is the remote-write 1.0 branch of Prometheus's writeHandler.Store.
func (s *v1Writer) Store(r *http.Request, _ remoteapi.WriteMessageType) (*remoteapi.WriteResponse, error) {
	raw, err := bodyBytes(r, maxDecodedSize)
	if err != nil {
		s.logger.Error("Error reading remote write request body", "err", err.Error())
		return nil, err
	}
	wr := remoteapi.NewWriteResponse()
	err = s.write(r.Context(), raw)
	var werr *wireError
	switch {
	case err == nil:
		return wr, nil
	case errors.As(err, &werr):
		s.logger.Error("Error decoding v1 remote write request", "protobuf_message", remoteapi.WriteV1MessageType, "err", err.Error())
		wr.SetStatusCode(http.StatusBadRequest)
	case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrDuplicateSampleForTimestamp), errors.Is(err, storage.ErrTooOldSample):
		// Bad requests, not to be retried.
		wr.SetStatusCode(http.StatusBadRequest)
	case errors.As(err, new(histogram.Error)):
		wr.SetStatusCode(http.StatusBadRequest)
	default:
		wr.SetStatusCode(http.StatusInternalServerError)
	}
	return wr, err
}

func isOutOfOrder(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrOutOfBounds) ||
		errors.Is(err, storage.ErrDuplicateSampleForTimestamp) || errors.Is(err, storage.ErrTooOldSample)
}

var errTooFarInFuture = fmt.Errorf("%w: timestamp is too far in the future", storage.ErrOutOfBounds)

// v1Series is one TimeSeries of a request, as either decoder found it.
// Histograms and exemplars come only from the generated decoder.
type v1Series struct {
	// wire is the series' label fields as sent, when VictoriaMetrics'
	// unmarshaler decoded them from there (scanV1), nil otherwise.
	wire       []byte
	labels     []vmprompb.Label
	samples    []vmprompb.Sample
	histograms []prompb.Histogram
	exemplars  []prompb.Exemplar
}

// write decodes the whole request, then appends it series by series,
// committing only if all of it appended. A body that is not a
// WriteRequest fails as a *wireError (400) before anything is appended.
func (s *v1Writer) write(ctx context.Context, raw []byte) error {
	st := v1States.Get().(*v1State)
	defer v1States.Put(st)
	wru := vmprompb.GetWriteRequestUnmarshaler()
	defer vmprompb.PutWriteRequestUnmarshaler(wru)

	var vm *vmprompb.WriteRequest
	var gen prompb.WriteRequest
	var generated bool
	st.wires, generated = scanV1(raw, st.wires[:0])
	defer func() { clear(st.wires) }() // references to the request's buffer
	if !generated {
		var err error
		if vm, err = wru.UnmarshalProtobuf(raw); err != nil {
			// What VictoriaMetrics' unmarshaler refuses, Prometheus's may
			// accept (an unknown group field, a varint past 64 bits): the
			// generated code has the last word on what is malformed.
			vm = nil
		}
	}
	if vm == nil {
		if err := gen.Unmarshal(raw); err != nil {
			return &wireError{err}
		}
		defer st.releaseGenerated()
	}

	a := s.app.AppenderV2(ctx).(*validatingAppender)
	maxTime := time.Now().Add(maxAheadTime).UnixMilli()
	invalid := 0
	var err error
	if vm != nil {
		wires := st.wires
		if len(wires) != len(vm.Timeseries) {
			wires = nil // not the series scanV1 expected: no shortcut
		}
		for i := range vm.Timeseries {
			ts := &vm.Timeseries[i]
			series := v1Series{labels: ts.Labels, samples: ts.Samples}
			if wires != nil && len(ts.Labels) > 0 && within(ts.Labels[0].Name, wires[i]) {
				series.wire = wires[i]
			}
			if err = s.appendSeries(a, st, &series, maxTime, &invalid); err != nil {
				break
			}
		}
	} else {
		for i := range gen.Timeseries {
			if err = s.appendSeries(a, st, st.fromGenerated(&gen.Timeseries[i]), maxTime, &invalid); err != nil {
				break
			}
		}
	}
	if err != nil {
		_ = a.Rollback()
		return err
	}
	if err := a.Commit(); err != nil {
		return err
	}
	if invalid > 0 {
		// Prometheus's handler skips them and answers 204; they never
		// reach the appender. The sender must hear of them instead of
		// believing them stored.
		a.refused.addInvalid(invalid)
		s.app.metrics.refused.WithLabelValues(ReasonInvalidLabels).Add(float64(invalid))
	}
	return nil
}

// appendSeries finds the labels of one series, checks them as Prometheus's
// handler does, and appends the series; series with invalid labels are
// counted in invalid and skipped.
func (s *v1Writer) appendSeries(a *validatingAppender, st *v1State, ts *v1Series, maxTime int64, invalid *int) error {
	if ts.wire != nil {
		if known := s.app.valid.lookupWire(ts.wire); known != nil {
			// The same label fields as a series found valid before.
			return s.appendSamples(a, st, ts, known.labels, known, maxTime)
		}
	}
	st.b.Reset()
	for _, l := range ts.labels {
		st.b.Add(l.Name, l.Value)
	}
	st.b.Sort()
	st.b.Overwrite(&st.ls)
	ls := st.ls
	hash := ls.Hash()
	known := s.app.valid.lookup(hash, ls)
	if known != nil {
		// Found valid before: it passed the checks below then.
		ls = known.labels
	} else {
		if !ls.Has(labels.MetricName) || !ls.IsValid(model.UTF8Validation) {
			s.logger.Warn("Invalid metric names or labels", "got", ls.String())
			*invalid += len(ts.samples) + len(ts.histograms)
			return nil
		}
		if dup, ok := ls.HasDuplicateLabelNames(); ok {
			s.logger.Warn("Invalid labels for series.", "labels", ls.String(), "duplicated_label", dup)
			*invalid += len(ts.samples) + len(ts.histograms)
			return nil
		}
		// The names and values are strings over the request's buffer,
		// which the next request reuses.
		ls = ls.Copy()
	}
	if err := s.appendSamples(a, st, ts, ls, known, maxTime); err != nil {
		return err
	}
	if known == nil {
		known = s.app.valid.lookup(hash, ls) // the appender validated it
	}
	if known != nil && ts.wire != nil {
		s.app.valid.rememberWire(ts.wire, known)
	}
	return nil
}

// appendSamples appends the samples, then the histograms, then the
// exemplars of one series, as Prometheus's handler does.
func (s *v1Writer) appendSamples(a *validatingAppender, st *v1State, ts *v1Series, ls labels.Labels, known *validSeries, maxTime int64) error {
	var ref storage.SeriesRef
	var err error
	for _, x := range ts.samples {
		if x.Timestamp > maxTime {
			err = errTooFarInFuture
		} else {
			ref, err = a.append(ref, ls, known, 0, x.Timestamp, x.Value, nil, nil, storage.AOptions{})
		}
		if err != nil {
			if isOutOfOrder(err) {
				s.logger.Error("Out of order sample from remote write", "err", err.Error(), "series", ls.String(), "timestamp", x.Timestamp)
			}
			return err
		}
	}
	for i := range ts.histograms {
		hp := &ts.histograms[i]
		if hp.Timestamp > maxTime {
			err = errTooFarInFuture
		} else if hp.IsFloatHistogram() {
			fh := hp.ToFloatHistogram()
			if histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
				if err := fh.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
					return err
				}
			}
			ref, err = a.append(ref, ls, known, 0, hp.Timestamp, 0, nil, fh, storage.AOptions{})
		} else {
			h := hp.ToIntHistogram()
			if histogram.IsExponentialSchemaReserved(h.Schema) && h.Schema > histogram.ExponentialSchemaMax {
				if err := h.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
					return err
				}
			}
			ref, err = a.append(ref, ls, known, 0, hp.Timestamp, 0, h, nil, storage.AOptions{})
		}
		if err != nil {
			if isOutOfOrder(err) {
				s.logger.Error("Out of order histogram from remote write", "err", err.Error(), "series", ls.String(), "timestamp", hp.Timestamp)
			}
			return err
		}
	}
	if len(ts.exemplars) == 0 {
		return nil
	}
	st.exemplars = st.exemplars[:0]
	for _, ep := range ts.exemplars {
		st.exemplars = append(st.exemplars, ep.ToExemplar(&st.eb, nil))
	}
	// AppendExemplars requires exemplars sorted by timestamp; those too far
	// in the future are dropped, and exemplar errors never fail the request.
	slices.SortFunc(st.exemplars, exemplar.Compare)
	valid := slices.DeleteFunc(st.exemplars, func(e exemplar.Exemplar) bool { return e.Ts > maxTime })
	if len(valid) > 0 {
		if _, err := a.AppendExemplars(ref, ls, valid); err != nil {
			s.logger.Debug("Error while adding exemplars", "series", ls.String(), "err", err)
		}
	}
	return nil
}
