package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	vmprompb "github.com/VictoriaMetrics/VictoriaMetrics/lib/prompb"
	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/remote/ingest"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// memStore is an in-memory storage that counts committed samples.
type memStore struct {
	mu        sync.Mutex
	committed int
}

func (m *memStore) AppenderV2(context.Context) storage.AppenderV2 { return &memApp{store: m} }

type memApp struct {
	store   *memStore
	pending int
}

func (a *memApp) Append(ref storage.SeriesRef, ls labels.Labels, _, _ int64, _ float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	a.pending++
	if ref == 0 {
		ref = storage.SeriesRef(ls.Hash())
	}
	return ref, nil
}

func (a *memApp) AppendExemplars(ref storage.SeriesRef, _ labels.Labels, _ []exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}

func (a *memApp) Commit() error {
	a.store.mu.Lock()
	a.store.committed += a.pending
	a.store.mu.Unlock()
	return nil
}

func (a *memApp) Rollback() error { a.pending = 0; return nil }

func index(rmp string) labels.Labels {
	return labels.FromStrings("__name__", "linky_index_wh", "rmp", rmp)
}

func series(n, samplesEach int, now time.Time) []st.Series {
	out := make([]st.Series, n)
	for i := range out {
		out[i].Labels = index(fmt.Sprintf("%014d", i))
		for j := range samplesEach {
			out[i].Samples = append(out[i].Samples, prompb.Sample{Timestamp: now.Add(time.Duration(j-samplesEach) * time.Minute).UnixMilli(), Value: float64(j)})
		}
	}
	return out
}

func post(h http.Handler, sender, ct string, body []byte) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Sender", sender)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestMaxSamplesPerRequest(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name    string
		series  int
		samples int
		want    int
		stored  int
	}{
		{"at the limit", 10, 10, http.StatusNoContent, 100},
		{"one over", 101, 1, http.StatusRequestEntityTooLarge, 0},
		{"over within one series", 1, 101, http.StatusRequestEntityTooLarge, 0},
	} {
		for _, v := range []struct {
			ct  string
			enc func(testing.TB, []st.Series) []byte
		}{{st.ContentTypeV1, st.EncodeV1}, {st.ContentTypeV2, st.EncodeV2}} {
			t.Run(tc.name+" "+v.ct, func(t *testing.T) {
				mem := &memStore{}
				hits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hits"}, []string{"limit"})
				h := ingest.NewHandler(ingest.Options{Storage: mem, MaxSamplesPerRequest: 100, LimitHits: hits})
				code, body := post(h, "s", v.ct, v.enc(t, series(tc.series, tc.samples, now)))
				require.Equal(t, tc.want, code, body)
				require.Equal(t, tc.stored, mem.committed)
				if code == http.StatusRequestEntityTooLarge {
					require.Contains(t, body, "write.max_samples_per_request")
					require.Equal(t, 1.0, testutil.ToFloat64(hits.WithLabelValues(ingest.LimitSamplesPerRequest)))
				}
			})
		}
	}
}

func TestNewSeriesPerDay(t *testing.T) {
	day := time.Date(2026, 6, 1, 23, 0, 0, 0, time.UTC)
	clock := day
	lim := ingest.NewSeriesLimiter(3, func() time.Time { return clock })
	lim.Seed(index(fmt.Sprintf("%014d", 99)).Hash())
	mem := &memStore{}
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hits"}, []string{"limit"})
	h := ingest.NewHandler(ingest.Options{Storage: mem, Series: lim, LimitHits: hits,
		Sender: func(r *http.Request) string { return r.Header.Get("X-Sender") }})
	now := time.Now()
	write := func(sender string, rmps ...int) (int, string) {
		var ss []st.Series
		for _, r := range rmps {
			ss = append(ss, st.Series{Labels: index(fmt.Sprintf("%014d", r)), Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 1}}})
		}
		return post(h, sender, st.ContentTypeV1, st.EncodeV1(t, ss))
	}
	code, body := write("a", 1, 2, 99)
	require.Equal(t, http.StatusNoContent, code, "a seeded series is not new: %s", body)
	code, body = write("a", 1, 3, 4, 5)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "write.max_new_series_per_day")
	require.Contains(t, body, `rmp="00000000000004"`)
	require.Contains(t, body, "2 samples of 2 series refused")
	require.Equal(t, 2.0, testutil.ToFloat64(hits.WithLabelValues(ingest.LimitNewSeriesPerDay)))
	require.Equal(t, 5, mem.committed, "known series and those within the quota are stored")

	code, body = write("b", 4, 5)
	require.Equal(t, http.StatusNoContent, code, "the quota is per sender: %s", body)
	code, _ = write("a", 6)
	require.Equal(t, http.StatusBadRequest, code)
	clock = day.Add(2 * time.Hour) // the next UTC day
	code, body = write("a", 6, 7, 8)
	require.Equal(t, http.StatusNoContent, code, "a new day, a new quota: %s", body)
}

// FuzzWrite: whatever the body and content type, the handler never panics,
// never acknowledges garbage (2xx stores something), and never blames
// itself (5xx) for a client's garbage, since storage here never fails.
func FuzzWrite(f *testing.F) {
	now := time.Now()
	good := series(3, 2, now)
	for _, seed := range []struct {
		ct   string
		body []byte
	}{
		{st.ContentTypeV1, st.EncodeV1(f, good)},
		{st.ContentTypeV2, st.EncodeV2(f, good)},
		{st.ContentTypeV1, st.EncodeV2(f, good)},
		{st.ContentTypeV2, st.EncodeV1(f, good)},
		{st.ContentTypeV1, st.EncodeV1(f, []st.Series{{Labels: labels.FromStrings("__name__", "up"), Samples: good[0].Samples}})},
		{st.ContentTypeV1, []byte("not snappy")},
		{"application/json", []byte("{}")},
		{"application/x-protobuf;proto=unknown", nil},
		{"", nil},
		{st.ContentTypeV1, st.EncodeV1(f, series(20, 10, now))},
	} {
		f.Add(seed.ct, seed.body)
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		mem := &memStore{}
		h := ingest.NewHandler(ingest.Options{Storage: mem, MaxBodyBytes: 1 << 20, MaxSamplesPerRequest: 100,
			Series: ingest.NewSeriesLimiter(50, nil), CurveCollectable: func(string, time.Time) bool { return true }})
		code, msg := post(h, "fuzz", ct, body)
		require.Less(t, code, 500, "a 5xx for a client's bytes: %s", msg)
		if code < 300 && mem.committed == 0 {
			// Acceptable only for a well-formed request without samples
			// (Prometheus sends metadata-only requests): it must decode.
			raw, err := snappy.Decode(nil, body)
			require.NoError(t, err, "2xx for a body that is not snappy")
			var v1 prompb.WriteRequest
			var v2 writev2.Request
			// The handler's reading of the content type: v2 only when
			// remoteapi parses it as such (a "v2" elsewhere in it is 1.0).
			if mt, err := remoteapi.ParseProtoMsg(ct); ct != "" && err == nil && mt == remoteapi.WriteV2MessageType {
				require.NoError(t, v2.Unmarshal(raw), "2xx for a body that is not a request")
				for _, ts := range v2.Timeseries {
					require.Empty(t, ts.Samples, "2xx, samples not stored")
				}
			} else if v1.Unmarshal(raw) == nil {
				for _, ts := range v1.Timeseries {
					require.Empty(t, ts.Samples, "2xx, samples not stored")
				}
			} else {
				// Prometheus's generated code refuses it; VictoriaMetrics'
				// unmarshaler, which metergate decodes 1.0 with, must not.
				wru := vmprompb.GetWriteRequestUnmarshaler()
				vm, err := wru.UnmarshalProtobuf(raw)
				require.NoError(t, err, "2xx for a body that is not a request")
				for _, ts := range vm.Timeseries {
					require.Empty(t, ts.Samples, "2xx, samples not stored")
				}
				vmprompb.PutWriteRequestUnmarshaler(wru)
			}
		}
		require.False(t, strings.Contains(msg, "panic"), msg)
	})
}

// countingMem counts the appenders opened.
type countingMem struct {
	memStore
	appenders int
}

func (c *countingMem) AppenderV2(ctx context.Context) storage.AppenderV2 {
	c.mu.Lock()
	c.appenders++
	c.mu.Unlock()
	return &memApp{store: &c.memStore}
}

// A request on series the WAL guard does not know is rolled back and run
// again alone; once committed, its series are known and the next request
// on them runs alongside others.
func TestWALGuardRunsNewSeriesAlone(t *testing.T) {
	mem := &countingMem{}
	guard := ingest.NewWALGuard()
	h := ingest.NewHandler(ingest.Options{Storage: mem, WAL: guard})
	now := time.Now()
	for _, tc := range []struct {
		name      string
		series    []st.Series
		appenders int
	}{
		{"new series: shared attempt, then alone", series(3, 2, now), 2},
		{"known series: shared", series(3, 2, now.Add(time.Minute)), 1},
		{"one new series among known ones: alone again", series(4, 2, now.Add(2*time.Minute)), 2},
	} {
		mem.appenders = 0
		before := mem.committed
		code, body := post(h, "s", st.ContentTypeV1, st.EncodeV1(t, tc.series))
		require.Equal(t, http.StatusNoContent, code, "%s: %s", tc.name, body)
		require.Equal(t, tc.appenders, mem.appenders, tc.name)
		require.Equal(t, len(tc.series)*2, mem.committed-before, "%s: committed once", tc.name)
	}
	// A known series under another reference (re-created by the head) is
	// not known.
	guard.Seed(index(fmt.Sprintf("%014d", 0)).Hash(), 12345)
	mem.appenders = 0
	code, body := post(h, "s", st.ContentTypeV1, st.EncodeV1(t, series(1, 1, now.Add(3*time.Minute))))
	require.Equal(t, http.StatusNoContent, code, body)
	require.Equal(t, 2, mem.appenders)
}

// Remote-write 2.0 answers carry the counts of what was written, as
// Prometheus's handler sets them; 1.0 answers do not, as in Prometheus.
func TestWrittenHeaders(t *testing.T) {
	now := time.Now()
	h := ingest.NewHandler(ingest.Options{Storage: &memStore{}})
	for _, tc := range []struct {
		ct      string
		enc     func(testing.TB, []st.Series) []byte
		samples string
	}{{st.ContentTypeV2, st.EncodeV2, "6"}, {st.ContentTypeV1, st.EncodeV1, ""}} {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(tc.enc(t, series(3, 2, now))))
		req.Header.Set("Content-Type", tc.ct)
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
		require.Equal(t, tc.samples, rec.Header().Get("X-Prometheus-Remote-Write-Samples-Written"), tc.ct)
		if tc.samples != "" {
			require.Equal(t, "0", rec.Header().Get("X-Prometheus-Remote-Write-Histograms-Written"))
			require.Equal(t, "0", rec.Header().Get("X-Prometheus-Remote-Write-Exemplars-Written"))
		}
	}
}

// TestSyncBeforeAnswer: a request is answered only after what it
// committed was synced (1.0 and 2.0 alike), a refusal that stored nothing
// costs no sync, and a failed sync answers 500, which the sender retries.
func TestSyncBeforeAnswer(t *testing.T) {
	now := time.Now()
	for _, v := range []struct {
		ct  string
		enc func(testing.TB, []st.Series) []byte
	}{{st.ContentTypeV1, st.EncodeV1}, {st.ContentTypeV2, st.EncodeV2}} {
		t.Run(v.ct, func(t *testing.T) {
			mem := &memStore{}
			var syncedAt []int // samples committed when each sync ran
			var fail error
			h := ingest.NewHandler(ingest.Options{Storage: mem, MaxSamplesPerRequest: 100, Sync: func() error {
				mem.mu.Lock()
				syncedAt = append(syncedAt, mem.committed)
				mem.mu.Unlock()
				return fail
			}})
			code, body := post(h, "s", v.ct, v.enc(t, series(10, 10, now)))
			require.Equal(t, http.StatusNoContent, code, body)
			require.Equal(t, []int{100}, syncedAt, "synced after the commit, before the answer")

			code, _ = post(h, "s", v.ct, v.enc(t, series(101, 1, now)))
			require.Equal(t, http.StatusRequestEntityTooLarge, code)
			require.Len(t, syncedAt, 1, "nothing stored, nothing synced")

			fail = errors.New("I/O error")
			code, body = post(h, "s", v.ct, v.enc(t, series(5, 2, now)))
			require.Equal(t, http.StatusInternalServerError, code)
			require.Contains(t, body, "could not be made durable")
		})
	}
}
