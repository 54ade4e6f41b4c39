package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
)

// v1Seeds are remote-write 1.0 bodies, uncompressed: valid series, series
// the catalogue or Prometheus's label checks refuse, exemplars, histograms,
// metadata, samples too far in the future, unknown and repeated fields.
func v1Seeds(t testing.TB) [][]byte {
	now := time.Now()
	ms := now.UnixMilli()
	lbl := func(kv ...string) []prompb.Label {
		var out []prompb.Label
		for i := 0; i < len(kv); i += 2 {
			out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	idx := func(rmp string) []prompb.Label { return lbl("__name__", catalogue.IndexConsumption, "rmp", rmp) }
	h := &histogram.Histogram{Count: 3, Sum: 2, Schema: 1, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 0}}
	reqs := []prompb.WriteRequest{
		{Timeseries: []prompb.TimeSeries{
			{Labels: idx("01234567890123"), Samples: []prompb.Sample{{Timestamp: ms - 60_000, Value: 1}, {Timestamp: ms, Value: 2}}},
			{Labels: lbl("rmp", "01234567890124", "__name__", catalogue.IndexConsumption), Samples: []prompb.Sample{{Timestamp: ms, Value: 3}}},
		}},
		{Timeseries: []prompb.TimeSeries{
			{Labels: lbl("__name__", "up"), Samples: []prompb.Sample{{Timestamp: ms, Value: 1}}},
			{Labels: lbl("rmp", "01234567890123"), Samples: []prompb.Sample{{Timestamp: ms, Value: 1}}},
			{Labels: lbl("__name__", catalogue.IndexConsumption, "rmp", "0123", "rmp", "01234567890123"), Samples: []prompb.Sample{{Timestamp: ms, Value: 1}}},
			{Labels: lbl("__name__", catalogue.IndexConsumption, "rmp", "\xff\xfe"), Samples: []prompb.Sample{{Timestamp: ms, Value: 1}}},
			{Labels: idx("01234567890125"), Samples: []prompb.Sample{{Timestamp: ms, Value: 4}}},
		}},
		{Timeseries: []prompb.TimeSeries{
			{Labels: idx("01234567890126"), Samples: []prompb.Sample{{Timestamp: ms, Value: 5}},
				Exemplars: []prompb.Exemplar{{Labels: lbl("trace_id", "abc"), Value: 1, Timestamp: ms}, {Labels: lbl("trace_id", "def"), Value: 2, Timestamp: ms + int64(time.Hour/time.Millisecond)}}},
			{Labels: idx("01234567890127"), Histograms: []prompb.Histogram{prompb.FromIntHistogram(ms, h)}},
		}},
		{Timeseries: []prompb.TimeSeries{
			{Labels: idx("01234567890128"), Samples: []prompb.Sample{{Timestamp: ms, Value: 6}, {Timestamp: ms + int64(time.Hour/time.Millisecond), Value: 7}}},
		}},
		{Timeseries: []prompb.TimeSeries{{Labels: idx("01234567890129"), Samples: []prompb.Sample{{Timestamp: ms, Value: math.NaN()}}}},
			Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: catalogue.IndexConsumption, Help: "index", Unit: "wh"}}},
		{Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "x"}}},
		{Timeseries: []prompb.TimeSeries{{Labels: idx("01234567890130")}}},
		{},
		// A series without samples between two with: VictoriaMetrics'
		// unmarshaler returns no series for it, and the label fields found
		// by scanV1 must still go with the right series.
		{Timeseries: []prompb.TimeSeries{
			{Labels: idx("01234567890131"), Samples: []prompb.Sample{{Timestamp: ms, Value: 8}}},
			{Labels: idx("01234567890132")},
			{Labels: lbl("__name__", "up"), Samples: []prompb.Sample{{Timestamp: ms, Value: 9}}},
			{Labels: idx("01234567890133"), Samples: []prompb.Sample{{Timestamp: ms, Value: 10}}},
		}},
	}
	var out [][]byte
	for _, r := range reqs {
		b, err := r.Marshal()
		require.NoError(t, err)
		out = append(out, b)
	}
	// Hand-made wire: an unknown varint field and an unknown group around
	// a series, a label whose name comes twice (the last one counts), a
	// sample whose fields come in reverse order.
	series := []byte{
		0x0a, 0x0b, 0x0a, 0x01, 'x', 0x0a, 0x01, 'y', 0x12, 0x01, 'z', 0x78, 0x01, // label: name x, name y, value z, field 15 varint
		0x12, 0x0b, 0x10, 0x02, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // sample: timestamp 2, value 1
	}
	hand := append([]byte{0x10, 0x05, 0x23, 0x08, 0x01, 0x24, 0x0a, byte(len(series))}, series...)
	out = append(out, hand)
	// Label fields split by a sample field: not together, no shortcut.
	split, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: idx("01234567890134"), Samples: []prompb.Sample{{Timestamp: ms, Value: 11}}}}}).Marshal()
	require.NoError(t, err)
	// Rebuild the series as: label 1, sample, label 2.
	var ts prompb.TimeSeries
	require.NoError(t, ts.Unmarshal(split[2:]))
	l0, err := ts.Labels[0].Marshal()
	require.NoError(t, err)
	l1, err := ts.Labels[1].Marshal()
	require.NoError(t, err)
	x, err := ts.Samples[0].Marshal()
	require.NoError(t, err)
	var body []byte
	body = append(body, 0x0a, byte(len(l0)))
	body = append(body, l0...)
	body = append(body, 0x12, byte(len(x)))
	body = append(body, x...)
	body = append(body, 0x0a, byte(len(l1)))
	body = append(body, l1...)
	out = append(out, append([]byte{0x0a, byte(len(body))}, body...))
	return append(out, misnumbered(t, ms)...)
}

// misnumbered are bodies with a field the generated decoder refuses and
// VictoriaMetrics' unmarshaler skips as unknown: numbered 0, or past
// 2^31-1, in the request, a series, a label, a sample or a metadata.
// Prometheus answers 400; so must metergate, storing nothing.
func misnumbered(t testing.TB, ms int64) [][]byte {
	field := func(num uint64, payload ...[]byte) []byte { // length-delimited
		out := binary.AppendUvarint(nil, num<<3|2)
		out = binary.AppendUvarint(out, uint64(len(bytes.Join(payload, nil))))
		return append(out, bytes.Join(payload, nil)...)
	}
	varint := func(num, v uint64) []byte { return binary.AppendUvarint(binary.AppendUvarint(nil, num<<3), v) }
	label := func(extra ...[]byte) []byte {
		return field(1, append([][]byte{field(1, []byte("__name__")), field(2, []byte(catalogue.IndexConsumption))}, extra...)...)
	}
	rmp := field(1, field(1, []byte("rmp")), field(2, []byte("01234567890135")))
	sample := func(extra ...[]byte) []byte {
		v := binary.LittleEndian.AppendUint64([]byte{0x09}, math.Float64bits(12))
		return field(2, append([][]byte{v, varint(2, uint64(ms))}, extra...)...)
	}
	metadata := func(extra ...[]byte) []byte {
		return field(3, append([][]byte{varint(1, 1), field(2, []byte(catalogue.IndexConsumption))}, extra...)...)
	}
	zero, past := varint(0, 1), varint(1<<31, 1)
	bodies := [][]byte{
		bytes.Join([][]byte{field(1, label(), rmp, sample()), zero}, nil),           // the request
		field(1, label(), rmp, sample(), zero),                                      // a series
		field(1, label(zero), rmp, sample()),                                        // a label
		field(1, label(), rmp, sample(zero)),                                        // a sample
		field(1, label(), rmp, sample(past)),                                        // a sample, past int32
		field(1, label(past), rmp, sample()),                                        // a label, past int32
		bytes.Join([][]byte{field(1, label(), rmp, sample()), metadata(zero)}, nil), // a metadata
		bytes.Join([][]byte{field(1, label(), rmp, sample()), metadata()}, nil),     // none: stored
	}
	for i, b := range bodies {
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(b); (err == nil) != (i == len(bodies)-1) {
			t.Fatalf("misnumbered body %d: the generated decoder says %v", i, err)
		}
	}
	return bodies
}

// recStore keeps what was committed, by series and sample.
type recStore struct {
	mu     sync.Mutex
	stored []string
}

func (m *recStore) AppenderV2(context.Context) storage.AppenderV2 { return &recApp{store: m} }

type recApp struct {
	store   *recStore
	pending []string
}

func (a *recApp) Append(ref storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	a.pending = append(a.pending, fmt.Sprintf("%s@%d=%x histogram=%t", ls.String(), t, math.Float64bits(v), h != nil || fh != nil))
	return storage.SeriesRef(ls.Hash() | 1), nil
}

func (a *recApp) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	for _, e := range es {
		a.pending = append(a.pending, fmt.Sprintf("%s exemplar %s@%d=%x", ls.String(), e.Labels.String(), e.Ts, math.Float64bits(e.Value)))
	}
	return ref, nil
}

func (a *recApp) Commit() error {
	a.store.mu.Lock()
	a.store.stored = append(a.store.stored, a.pending...)
	a.store.mu.Unlock()
	return nil
}

func (a *recApp) Rollback() error { a.pending = nil; return nil }

// answer is what a handler answered and what reached storage.
type answer struct {
	code    int
	stored  []string
	refused []string
}

func serveV1(t testing.TB, viaPrometheus bool, raw []byte, ct string) answer {
	store := &recStore{}
	m := &metrics{
		ingested:  prometheus.NewCounter(prometheus.CounterOpts{Name: "i"}),
		refused:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"reason"}),
		requests:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "q"}, []string{"code"}),
		limitHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "l"}, []string{"limit"}),
	}
	app := &validatingAppendable{next: store, valid: newValidCache(), metrics: m, maxSamples: 100,
		curveOK: func(string, time.Time) bool { return true }, needsConsent: func(*catalogue.Metric) bool { return false }}
	logger := slog.New(slog.DiscardHandler)
	var h http.Handler
	if viaPrometheus {
		h = remote.NewWriteHandler(logger, prometheus.NewRegistry(), app, remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}, false, false)
	} else {
		h = newV1Handler(app, logger)
	}
	var a answer
	// Twice: the second time every valid series comes from the cache.
	for range 2 {
		store.stored = nil
		ctx, refused := withRefusals(context.Background())
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw))).WithContext(ctx)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		a = answer{code: rec.Code, stored: store.stored}
		if rec.Code >= 300 {
			// The refusals of a request that failed as a whole are not
			// reported (the HTTP handler answers the failure) nor counted.
			continue
		}
		for _, r := range refused.order {
			if !bytes.Contains([]byte(r), []byte(ReasonInvalidLabels)) { // counted by metergate's 1.0 path only
				a.refused = append(a.refused, r)
			}
		}
	}
	return a
}

// The 1.0 path answers what Prometheus's handler answers (the same status
// code), stores the same samples and exemplars and refuses the same series,
// for every body: VictoriaMetrics' unmarshaler decodes the labels and
// samples of the bodies Prometheus's generated decoder accepts alike; those
// it would not decode alike (histograms, exemplars), those it refuses and
// those only it accepts (a field numbered 0 or past 2^31-1, at any depth)
// go to the generated code.
func FuzzV1MatchesPrometheus(f *testing.F) {
	for _, b := range v1Seeds(f) {
		f.Add(b, ContentTypeV1ForTest)
	}
	f.Add([]byte("garbage"), ContentTypeV1ForTest)
	f.Add(v1Seeds(f)[0], "application/x-protobuf")
	f.Add([]byte{0x0a, 0x80}, ContentTypeV1ForTest)
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00}, ContentTypeV1ForTest)
	f.Add([]byte{0x0b, 0x0c}, ContentTypeV1ForTest)
	f.Add([]byte{0x02, 0x00}, ContentTypeV1ForTest)
	f.Fuzz(func(t *testing.T, raw []byte, ct string) {
		if !isV1(ct) {
			return
		}
		want := serveV1(t, true, raw, ct)
		got := serveV1(t, false, raw, ct)
		require.Equal(t, want, got)
	})
}

const ContentTypeV1ForTest = "application/x-protobuf;proto=prometheus.WriteRequest"

func TestV1MatchesPrometheus(t *testing.T) {
	for i, raw := range v1Seeds(t) {
		want := serveV1(t, true, raw, ContentTypeV1ForTest)
		got := serveV1(t, false, raw, ContentTypeV1ForTest)
		require.Equal(t, want, got, "seed %d", i)
		t.Logf("seed %d: %d, %d stored, %d refused", i, got.code, len(got.stored), len(got.refused))
	}
}
