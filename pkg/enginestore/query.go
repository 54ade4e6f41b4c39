package enginestore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/storage"
)

// Evaluator is the engine's Prometheus query API (/api/v1/query and
// /api/v1/query_range under read_url, with the tenant's path or header)
// as the privacy gate uses it to have the engine compute what it publishes
// (gate.Pushdown). Queries are POSTed as forms: the gate's PromQL names the
// members of a perimeter and can be long.
type Evaluator struct {
	base   string
	kind   Kind
	client *http.Client
	raw    storage.Queryable

	mu       sync.Mutex
	leftOpen *bool

	// What the engine is asked, for operators: the cost of a query grows
	// with the members it names (docs/scaling.md).
	mQueries *prometheus.CounterVec
	mSeconds prometheus.Histogram
	mBytes   prometheus.Histogram
}

func newEvaluator(o Options, rt http.RoundTripper, raw storage.Queryable, reg prometheus.Registerer) *Evaluator {
	f := promauto.With(reg)
	return &Evaluator{base: strings.TrimSuffix(o.ReadURL, "/"), kind: o.Kind, client: &http.Client{Transport: rt, Timeout: o.Timeout}, raw: raw,
		mQueries: f.NewCounterVec(prometheus.CounterOpts{Name: "metergate_engine_queries_total",
			Help: "PromQL queries the gate sent to the engine's query API, by outcome (ok, error)."}, []string{"outcome"}),
		mSeconds: f.NewHistogram(prometheus.HistogramOpts{Name: "metergate_engine_query_seconds",
			Help: "Time the engine took to answer the gate's queries.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 8)}),
		mBytes: f.NewHistogram(prometheus.HistogramOpts{Name: "metergate_engine_query_bytes",
			Help: "Length of the gate's queries to the engine (they name the members of a perimeter).", Buckets: prometheus.ExponentialBuckets(1024, 4, 8)}),
	}
}

// Raw reads raw samples through /api/v1/query (a range selector).
func (a *Evaluator) Raw() storage.Queryable { return a.raw }

// Query is an instant query at ts.
func (a *Evaluator) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	form := url.Values{"query": {query}, "time": {apiSeconds(ts)}}
	a.noCache(form)
	var v model.Vector
	err := a.do(ctx, "/api/v1/query", form, model.ValVector, &v)
	return v, err
}

// QueryRange is a range query from start to end every step.
func (a *Evaluator) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (model.Matrix, error) {
	form := url.Values{"query": {query}, "start": {apiSeconds(start)}, "end": {apiSeconds(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	a.noCache(form)
	var m model.Matrix
	err := a.do(ctx, "/api/v1/query_range", form, model.ValMatrix, &m)
	return m, err
}

// noCache turns VictoriaMetrics' response cache off for a query. The cache
// takes data older than a few minutes as final, but Linky days arrive at
// D+1 and later, and every answer must count what has arrived; with the
// cache on, a range query's start and end are also aligned to its step,
// and local midnights are not multiples of a day.
func (a *Evaluator) noCache(form url.Values) {
	if a.kind == VictoriaMetrics {
		form.Set("nocache", "1")
	}
}

// RangeLeftOpen reports whether a range selector [d] evaluated at t leaves
// out a sample stamped t−d. VictoriaMetrics always has ((t−d, t]);
// Prometheus changed in 3.0 ([t−d, t] before), and Mimir and Thanos follow
// the Prometheus they embed, so those are asked once: a subquery [2ms:1ms]
// holds 3 points on a closed window and 2 on an open one.
func (a *Evaluator) RangeLeftOpen(ctx context.Context) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leftOpen != nil {
		return *a.leftOpen, nil
	}
	open := true
	if a.kind != VictoriaMetrics {
		v, err := a.Query(ctx, "count_over_time(vector(1)[2ms:1ms])", time.Now())
		if err != nil {
			return false, err
		}
		if len(v) != 1 || (v[0].Value != 2 && v[0].Value != 3) {
			return false, fmt.Errorf("engine answered %v to the window probe", v)
		}
		open = v[0].Value == 2
	}
	a.leftOpen = &open
	return open, nil
}

// apiResponse is the envelope of the Prometheus HTTP API.
type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType model.ValueType `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
	// IsPartial is VictoriaMetrics cluster's flag for an answer missing
	// some vmstorage nodes: counts over it would be wrong.
	IsPartial bool `json:"isPartial"`
}

func (a *Evaluator) do(ctx context.Context, path string, form url.Values, want model.ValueType, into any) (err error) {
	start := time.Now()
	a.mBytes.Observe(float64(len(form.Get("query"))))
	defer func() {
		a.mSeconds.Observe(time.Since(start).Seconds())
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		a.mQueries.WithLabelValues(outcome).Inc()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("engine query request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("engine query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("engine query: reading the answer: %w", err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("engine query answered %s: %.200s", resp.Status, body)
	}
	switch {
	case r.Status != "success":
		return fmt.Errorf("engine query answered %s: %s: %.500s", resp.Status, r.ErrorType, r.Error)
	case r.IsPartial:
		return fmt.Errorf("engine query: partial answer (some storage nodes did not answer)")
	case r.Data.ResultType != want:
		return fmt.Errorf("engine query answered a %s, not a %s", r.Data.ResultType, want)
	}
	if err := json.Unmarshal(r.Data.Result, into); err != nil {
		return fmt.Errorf("engine query: decoding the %s: %w", want, err)
	}
	return nil
}

// apiSeconds is a time as the API's seconds with milliseconds.
func apiSeconds(t time.Time) string {
	ms := t.UnixMilli()
	return strconv.FormatInt(ms/1000, 10) + "." + fmt.Sprintf("%03d", ms%1000)
}
