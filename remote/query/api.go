// Package query serves the Prometheus HTTP query API (/api/v1/query and
// /api/v1/query_range) in Prometheus's JSON format, so that Grafana's
// Prometheus data source, promtool and analysts' scripts work unchanged.
//
// The API only parses HTTP and formats answers: who may see what is decided
// by the Evaluator it is given, which is the privacy gate in the server.
package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/metergate/metergate/pkg/config"
)

// Result is an evaluated query and the notices its reader must see.
type Result struct {
	Value parser.Value
	// Warnings are shown by Grafana above the panel, e.g. that points were
	// hidden to protect privacy.
	Warnings []string
}

// Evaluator evaluates PromQL for a caller.
type Evaluator interface {
	Query(ctx context.Context, c *config.Caller, q string, ts time.Time) (Result, error)
	QueryRange(ctx context.Context, c *config.Caller, q string, start, end time.Time, step time.Duration) (Result, error)
}

// ErrRefused is answered 403 with the error's own message, whatever the
// evaluator wraps, so that a refusal tells nothing but that it is one.
var ErrRefused = errors.New("query refused by the privacy policy")

// ErrUnavailable is answered 503: the query could not be evaluated now
// (storage trouble) and may be retried.
var ErrUnavailable = errors.New("query could not be evaluated")

// CallerFunc returns the authenticated caller of a request (set by the
// server's authentication middleware), or nil.
type CallerFunc func(*http.Request) *config.Caller

// API is the query API.
type API struct {
	Eval   Evaluator
	Caller CallerFunc
	// Now is the server's clock (tests set it).
	Now func() time.Time
	// RefusalError is the constant error every refusal is answered with;
	// errors.Is(err, RefusalError) selects them.
	RefusalError error
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("/api/v1/query", a.instant)
	mux.HandleFunc("/api/v1/query_range", a.rangeQuery)
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

type apiError struct {
	typ  string
	code int
	err  error
}

func (a *API) instant(w http.ResponseWriter, r *http.Request) {
	c, form, e := a.prepare(r)
	if e != nil {
		writeError(w, e)
		return
	}
	ts := a.now()
	if s := form.Get("time"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			writeError(w, &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf("invalid parameter 'time': %w", err)})
			return
		}
		ts = t
	}
	ctx, cancel, e := withTimeout(r.Context(), form.Get("timeout"))
	if e != nil {
		writeError(w, e)
		return
	}
	defer cancel()
	res, err := a.Eval.Query(ctx, c, form.Get("query"), ts)
	a.respond(w, res, err)
}

func (a *API) rangeQuery(w http.ResponseWriter, r *http.Request) {
	c, form, e := a.prepare(r)
	if e != nil {
		writeError(w, e)
		return
	}
	start, err := parseTime(form.Get("start"))
	if err != nil {
		writeError(w, &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf("invalid parameter 'start': %w", err)})
		return
	}
	end, err := parseTime(form.Get("end"))
	if err != nil {
		writeError(w, &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf("invalid parameter 'end': %w", err)})
		return
	}
	if end.Before(start) {
		writeError(w, &apiError{"bad_data", http.StatusBadRequest, errors.New("invalid parameter 'end': end timestamp must not be before start time")})
		return
	}
	step, err := parseDuration(form.Get("step"))
	if err != nil || step <= 0 {
		writeError(w, &apiError{"bad_data", http.StatusBadRequest, errors.New("invalid parameter 'step': zero or negative query resolution step widths are not accepted. Try a positive integer")})
		return
	}
	if end.Sub(start)/step > 11000 {
		writeError(w, &apiError{"bad_data", http.StatusBadRequest, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")})
		return
	}
	ctx, cancel, e := withTimeout(r.Context(), form.Get("timeout"))
	if e != nil {
		writeError(w, e)
		return
	}
	defer cancel()
	res, err := a.Eval.QueryRange(ctx, c, form.Get("query"), start, end, step)
	a.respond(w, res, err)
}

// prepare authenticates, reads the form and refuses a query given twice:
// with the query both in the URL and the body, a proxy in front and the
// server could disagree on which one was checked.
func (a *API) prepare(r *http.Request) (*config.Caller, url.Values, *apiError) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return nil, nil, &apiError{"bad_data", http.StatusMethodNotAllowed, errors.New("use GET or POST")}
	}
	c := a.Caller(r)
	if c == nil || c.Audience == "" {
		return nil, nil, &apiError{"unauthorized", http.StatusUnauthorized, errors.New("a valid bearer token with read access is required")}
	}
	if err := r.ParseForm(); err != nil {
		return nil, nil, &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf("parsing form: %w", err)}
	}
	for k, v := range r.Form {
		if len(v) > 1 {
			return nil, nil, &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf("parameter %q is given more than once", k)}
		}
	}
	if r.Form.Get("query") == "" {
		return nil, nil, &apiError{"bad_data", http.StatusBadRequest, errors.New("invalid parameter 'query': empty query")}
	}
	return c, r.Form, nil
}

func withTimeout(ctx context.Context, s string) (context.Context, context.CancelFunc, *apiError) {
	if s == "" {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return nil, nil, &apiError{"bad_data", http.StatusBadRequest, fmt.Errorf("invalid parameter 'timeout': %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

func (a *API) respond(w http.ResponseWriter, res Result, err error) {
	if err != nil {
		writeError(w, a.classify(err))
		return
	}
	writeJSON(w, http.StatusOK, response{Status: "success", Data: data{ResultType: res.Value.Type(), Result: res.Value}, Warnings: res.Warnings})
}

func (a *API) classify(err error) *apiError {
	var perr parser.ParseErrors
	switch {
	case a.RefusalError != nil && errors.Is(err, a.RefusalError), errors.Is(err, ErrRefused):
		// Never the wrapped detail: the reason and the set size stay in the audit log.
		msg := ErrRefused
		if a.RefusalError != nil {
			msg = a.RefusalError
		}
		return &apiError{"forbidden", http.StatusForbidden, msg}
	case errors.Is(err, ErrUnavailable):
		return &apiError{"unavailable", http.StatusServiceUnavailable, ErrUnavailable}
	case errors.As(err, &perr):
		return &apiError{"bad_data", http.StatusBadRequest, err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{"timeout", http.StatusServiceUnavailable, errors.New("query timed out")}
	case errors.Is(err, context.Canceled):
		return &apiError{"canceled", http.StatusServiceUnavailable, errors.New("query canceled")}
	}
	var qerr promql.ErrQueryTimeout
	if errors.As(err, &qerr) {
		return &apiError{"timeout", http.StatusServiceUnavailable, err}
	}
	var serr promql.ErrStorage
	if errors.As(err, &serr) {
		return &apiError{"internal", http.StatusInternalServerError, err}
	}
	return &apiError{"execution", http.StatusUnprocessableEntity, err}
}

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

type data struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     parser.Value     `json:"result"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
	}
	writeJSON(w, e.code, response{Status: "error", ErrorType: e.typ, Error: e.err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"status":"error","errorType":"internal","error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// parseTime reads a Unix timestamp (with fractions) or RFC 3339, as Prometheus does.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration reads seconds (with fractions) or a Prometheus duration.
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if ts > float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
	}
	return time.Duration(d), nil
}
