package enginestore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/enginestore"
)

// fakeAPI records the requests to a Prometheus query API and answers
// with a fixed body.
type fakeAPI struct {
	mu     sync.Mutex
	reqs   []*http.Request
	forms  []url.Values
	answer string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.forms = append(f.forms, r.PostForm)
	answer := f.answer
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, answer)
}

func (f *fakeAPI) set(answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = answer
}

// seen returns the requests so far and their forms.
func (f *fakeAPI) seen() ([]*http.Request, []url.Values) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...), append([]url.Values(nil), f.forms...)
}

func openEvaluator(t *testing.T, o enginestore.Options) (*enginestore.Evaluator, *prometheus.Registry) {
	t.Helper()
	o.WriteURL = o.ReadURL + "/api/v1/push"
	o.QueueDir = t.TempDir()
	reg := prometheus.NewRegistry()
	s, err := enginestore.Open(o, nil, reg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s.Evaluator(), reg
}

// The gate's PromQL goes by POST (it names a perimeter's members), with
// the tenant's header, under read_url.
func TestEvaluatorPostsWithTenant(t *testing.T) {
	f := &fakeAPI{answer: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"metergate_figure":"0/sum"},"value":[1711839600,"12345.5"]}]}}`}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ev, _ := openEvaluator(t, enginestore.Options{Kind: enginestore.Mimir, ReadURL: srv.URL + "/prometheus", Tenant: "team-a"})
	at := time.UnixMilli(1711839600000)
	v, err := ev.Query(context.Background(), `sum(x{rmp=~"a|b"})`, at)
	require.NoError(t, err)
	require.Len(t, v, 1)
	assert.Equal(t, 12345.5, float64(v[0].Value))
	assert.Equal(t, "0/sum", string(v[0].Metric["metergate_figure"]))
	reqs, forms := f.seen()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/prometheus/api/v1/query", r.URL.Path)
	assert.Empty(t, r.URL.RawQuery, "the query travels in the body")
	assert.Equal(t, "team-a", r.Header.Get("X-Scope-OrgID"))
	assert.Equal(t, `sum(x{rmp=~"a|b"})`, forms[0].Get("query"))
	assert.Equal(t, "1711839600.000", forms[0].Get("time"))
	assert.Empty(t, forms[0].Get("nocache"))

	open, err := ev.RangeLeftOpen(context.Background())
	require.Error(t, err, "a vector of one 0/sum is no answer to the window probe")
	assert.False(t, open)
}

// VictoriaMetrics: no response cache (late days must count, and midnights
// are not aligned to the step), and a partial answer of a cluster is an
// error, not fewer contributors.
func TestEvaluatorVictoriaMetrics(t *testing.T) {
	f := &fakeAPI{answer: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1711666800,"7"],[1711753200,"4"]]}]}}`}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ev, reg := openEvaluator(t, enginestore.Options{Kind: enginestore.VictoriaMetrics, ReadURL: srv.URL + "/select/3/prometheus"})
	m, err := ev.QueryRange(context.Background(), "count(x)", time.UnixMilli(1711666800000), time.UnixMilli(1711753200000), 24*time.Hour)
	require.NoError(t, err)
	require.Len(t, m, 1)
	require.Len(t, m[0].Values, 2)
	reqs, forms := f.seen()
	r, form := reqs[0], forms[0]
	assert.Equal(t, "/select/3/prometheus/api/v1/query_range", r.URL.Path)
	assert.Equal(t, "1", form.Get("nocache"))
	assert.Equal(t, "86400", form.Get("step"))
	assert.Equal(t, "1711666800.000", form.Get("start"))

	open, err := ev.RangeLeftOpen(context.Background())
	require.NoError(t, err)
	assert.True(t, open)
	reqs, _ = f.seen()
	assert.Len(t, reqs, 1, "VictoriaMetrics is not probed: its windows are always left-open")

	f.set(`{"status":"success","isPartial":true,"data":{"resultType":"vector","result":[]}}`)
	_, err = ev.Query(context.Background(), "count(x)", time.Now())
	require.ErrorContains(t, err, "partial")
	f.set(`{"status":"error","errorType":"422","error":"cannot exceed -search.maxQueryLen=16384"}`)
	_, err = ev.Query(context.Background(), "count(x)", time.Now())
	require.ErrorContains(t, err, "maxQueryLen", "the engine's reason reaches the log")

	// Operators see what the engine is asked.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case mf.GetName() == "metergate_engine_queries_total":
				got[mf.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	assert.Equal(t, 1.0, got["metergate_engine_queries_total/ok"])
	assert.Equal(t, 2.0, got["metergate_engine_queries_total/error"], "the partial answer and the refusal")
	assert.Equal(t, 3.0, got["metergate_engine_query_seconds"])
	assert.Equal(t, 3.0, got["metergate_engine_query_bytes"])
}

// Prometheus is asked once how it bounds range windows.
func TestEvaluatorProbesWindows(t *testing.T) {
	for _, tc := range []struct {
		points string
		open   bool
	}{{"3", false}, {"2", true}} {
		f := &fakeAPI{answer: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1000000,"` + tc.points + `"]}]}}`}
		srv := httptest.NewServer(f)
		ev, _ := openEvaluator(t, enginestore.Options{Kind: enginestore.Prometheus, ReadURL: srv.URL})
		for range 2 {
			open, err := ev.RangeLeftOpen(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tc.open, open, tc.points)
		}
		reqs, forms := f.seen()
		assert.Len(t, reqs, 1, "asked once")
		assert.Equal(t, "count_over_time(vector(1)[2ms:1ms])", forms[0].Get("query"))
		srv.Close()
	}
}
