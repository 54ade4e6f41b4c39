package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/registry"
)

// The endpoints Prometheus serves besides write and query are side
// channels: a series or label listing names every meter, a status page
// counts series per label value, remote read and federation bypass the
// gate. Each one is registered here explicitly, and is either closed,
// reduced to what the caller's audience may address (gate.Visible), or
// served from the raw storage to operators only, audited.

// compatVersion is the Prometheus version metergate's API answers as:
// Grafana's Prometheus data source reads it to choose the features it uses.
const compatVersion = "3.0.0"

// refusedBody is the one answer to every refusal, the same bytes as the
// query API's: it says nothing but that the request is refused.
var refusedBody = mustJSON(apiResponse{Status: "error", ErrorType: "forbidden", Error: gate.ErrRefused.Error()})

type apiResponse struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// metadata serves the non-query endpoints of the Prometheus API.
type metadata struct {
	s      *Server
	parser parser.Parser
	read   http.Handler // Prometheus's remote-read handler, operators only
}

// metadataRoutes registers every non-query endpoint Prometheus clients know.
func (s *Server) metadataRoutes(mux *http.ServeMux) {
	m := &metadata{s: s, parser: parser.NewParser(parser.Options{})}
	if q, ok := s.store.(storage.SampleAndChunkQueryable); ok {
		m.read = remote.NewReadHandler(s.logger.With("component", "remote-read"), s.reg, q,
			func() promconfig.Config { return promconfig.Config{} }, 5e7, 4, 1<<20)
	}
	// Reduced to what the audience may address.
	mux.HandleFunc("/api/v1/labels", m.reader(m.labels))
	mux.HandleFunc("/api/v1/label/{name}/values", m.reader(m.labelValues))
	mux.HandleFunc("/api/v1/metadata", m.reader(m.metricMetadata))
	// Tell nothing about the data.
	mux.HandleFunc("/api/v1/status/buildinfo", m.reader(m.buildinfo))
	mux.HandleFunc("/api/v1/format_query", m.reader(m.formatQuery))
	// Raw storage, operators only.
	mux.HandleFunc("/api/v1/series", m.operator(m.series))
	mux.HandleFunc("/api/v1/read", m.operator(m.remoteRead))
	mux.HandleFunc("/federate", m.operator(m.federate))
	mux.HandleFunc("/api/v1/query_exemplars", m.operator(m.exemplars))
	mux.HandleFunc("/api/v1/rules", m.operator(m.ruleGroups))
	mux.HandleFunc("/api/v1/alerts", m.operator(m.alerts))
	mux.HandleFunc("/api/v1/targets", m.operator(m.targets))
	mux.HandleFunc("/api/v1/targets/", m.operator(m.targets))
	// Never served: status pages count series per label value (rmp
	// included) and the configuration holds every caller's token; admin
	// endpoints delete and snapshot data.
	mux.HandleFunc("/api/v1/status/", m.operator(notServed))
	mux.HandleFunc("/api/v1/admin/", m.operator(notServed))
}

type handler func(w http.ResponseWriter, r *http.Request, c *config.Caller)

// reader admits callers with a reading audience, as the query API does.
func (m *metadata) reader(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			writeAPIError(w, http.StatusMethodNotAllowed, "bad_data", "use GET or POST")
			return
		}
		c := CallerOf(r)
		if c == nil || c.Audience == "" {
			writeAPIError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token with read access is required")
			return
		}
		h(w, r, c)
	}
}

// operator admits operators only; every other reader gets the constant
// refusal, recorded in the audit log (probing is worth knowing about).
func (m *metadata) operator(h handler) http.HandlerFunc {
	return m.reader(func(w http.ResponseWriter, r *http.Request, c *config.Caller) {
		if c.Audience != registry.Operator {
			if err := m.audit(r, c, audit.Refused, 0); err != nil {
				m.unavailable(w, r, err)
				return
			}
			writeRefused(w)
			return
		}
		h(w, r, c)
	})
}

// audit records a request outside the gate. No record, no answer.
func (m *metadata) audit(r *http.Request, c *config.Caller, decision string, rows int) error {
	if m.s.audit == nil {
		return errors.New("audit log closed")
	}
	rec := audit.Record{Time: time.Now(), Caller: c.Name, Audience: string(c.Audience),
		Query: r.Method + " " + r.URL.Path, Decision: decision, Rows: rows}
	if r.Form != nil && len(r.Form) > 0 {
		rec.Query += "?" + r.Form.Encode()
	} else if r.URL.RawQuery != "" {
		rec.Query += "?" + r.URL.RawQuery
	}
	for _, uc := range c.UseCases {
		rec.UseCases = append(rec.UseCases, string(uc))
	}
	if decision == audit.Refused {
		rec.Rule, rec.Detail = "endpoint", "operators only"
	}
	if err := m.s.audit.Append(rec); err != nil {
		return fmt.Errorf("auditing %s: %w", r.URL.Path, err)
	}
	return nil
}

func (m *metadata) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	m.s.logger.ErrorContext(r.Context(), "metadata request failed", "path", r.URL.Path, "err", err)
	writeAPIError(w, http.StatusServiceUnavailable, "unavailable", gate.ErrUnavailable.Error())
}

// form parses the parameters and refuses one given twice (in the URL and
// the body, or repeated), as the query API does; match[] alone may repeat.
func form(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", "parsing form: "+err.Error())
		return nil, false
	}
	for k, v := range r.Form {
		if len(v) > 1 && k != "match[]" {
			writeAPIError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("parameter %q is given more than once", k))
			return nil, false
		}
	}
	return r.Form, true
}

func (m *metadata) labels(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	f, ok := form(w, r)
	if !ok {
		return
	}
	if c.Audience == registry.Operator {
		m.operatorLabels(w, r, c, f, "")
		return
	}
	writeData(w, gate.Visible(m.s.Registry(), c).Labels)
}

func (m *metadata) labelValues(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	f, ok := form(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if c.Audience == registry.Operator {
		m.operatorLabels(w, r, c, f, name)
		return
	}
	v := gate.Visible(m.s.Registry(), c)
	switch {
	case name == labels.MetricName:
		writeData(w, nonNil(v.Metrics))
	case name == gate.LabelPerimeter:
		writeData(w, nonNil(v.Perimeters))
	case v.GroupValues[name] != nil:
		writeData(w, v.GroupValues[name])
	default:
		// rmp, concentrator and every other label would list meters or
		// their placement; unknown labels get the same answer, so the
		// refusal does not tell which labels exist.
		writeRefused(w)
	}
}

// operatorLabels lists label names (name == "") or one label's values
// from the raw storage, audited.
func (m *metadata) operatorLabels(w http.ResponseWriter, r *http.Request, c *config.Caller, f url.Values, name string) {
	mint, maxt, matchers, ok := m.rangeAndMatchers(w, f, false)
	if !ok {
		return
	}
	out, err := func() ([]string, error) {
		q, err := m.s.store.Querier(mint, maxt)
		if err != nil {
			return nil, fmt.Errorf("opening a querier: %w", err)
		}
		defer q.Close()
		set := map[string]bool{}
		if len(matchers) == 0 {
			matchers = [][]*labels.Matcher{nil} // no match[]: every series
		}
		for _, ms := range matchers {
			var vals []string
			if name == "" {
				vals, _, err = q.LabelNames(r.Context(), nil, ms...)
			} else {
				vals, _, err = q.LabelValues(r.Context(), name, nil, ms...)
			}
			if err != nil {
				return nil, fmt.Errorf("listing labels: %w", err)
			}
			for _, v := range vals {
				set[v] = true
			}
		}
		out := make([]string, 0, len(set))
		for v := range set {
			out = append(out, v)
		}
		slices.Sort(out)
		return out, nil
	}()
	if err != nil {
		m.unavailable(w, r, err)
		return
	}
	if err := m.audit(r, c, audit.Allowed, len(out)); err != nil {
		m.unavailable(w, r, err)
		return
	}
	writeData(w, out)
}

func (m *metadata) series(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	f, ok := form(w, r)
	if !ok {
		return
	}
	mint, maxt, matchers, ok := m.rangeAndMatchers(w, f, true)
	if !ok {
		return
	}
	out, err := m.selectSeries(r.Context(), mint, maxt, matchers, false, func(s storage.Series) any { return s.Labels() })
	if err != nil {
		m.unavailable(w, r, err)
		return
	}
	if err := m.audit(r, c, audit.Allowed, len(out)); err != nil {
		m.unavailable(w, r, err)
		return
	}
	writeData(w, out)
}

// selectSeries runs each matcher set and maps each distinct series. With
// withSamples false the storage may skip the samples (hint "series").
func (m *metadata) selectSeries(ctx context.Context, mint, maxt int64, matchers [][]*labels.Matcher, withSamples bool, each func(storage.Series) any) ([]any, error) {
	q, err := m.s.store.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("opening a querier: %w", err)
	}
	defer q.Close()
	seen := map[string]bool{}
	out := []any{}
	for _, ms := range matchers {
		hints := &storage.SelectHints{Start: mint, End: maxt}
		if !withSamples {
			hints.Func = "series"
		}
		set := q.Select(ctx, true, hints, ms...)
		for set.Next() {
			s := set.At()
			if k := s.Labels().String(); !seen[k] {
				seen[k] = true
				if v := each(s); v != nil {
					out = append(out, v)
				}
			}
		}
		if err := set.Err(); err != nil {
			return nil, fmt.Errorf("selecting series: %w", err)
		}
	}
	return out, nil
}

// federate answers the newest sample of each matched series within the
// last five minutes, in the text exposition format, as Prometheus does.
func (m *metadata) federate(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	f, ok := form(w, r)
	if !ok {
		return
	}
	now := time.Now()
	// Milliseconds, not seconds: a sample stamped a moment ago is the newest.
	f.Set("start", strconv.FormatFloat(float64(now.Add(-5*time.Minute).UnixMilli())/1000, 'f', 3, 64))
	f.Set("end", strconv.FormatFloat(float64(now.UnixMilli())/1000, 'f', 3, 64))
	mint, maxt, matchers, ok := m.rangeAndMatchers(w, f, true)
	if !ok {
		return
	}
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	lines, err := m.selectSeries(r.Context(), mint, maxt, matchers, true, func(s storage.Series) any {
		it := s.Iterator(nil)
		var t int64
		var v float64
		found := false
		for it.Next() == chunkenc.ValFloat { // histograms are not federated
			t, v = it.At()
			found = true
		}
		if !found {
			return nil
		}
		var b strings.Builder
		b.WriteString(s.Labels().Get(labels.MetricName))
		b.WriteByte('{')
		first := true
		s.Labels().Range(func(l labels.Label) {
			if l.Name == labels.MetricName {
				return
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			fmt.Fprintf(&b, `%s="%s"`, l.Name, esc.Replace(l.Value))
		})
		fmt.Fprintf(&b, "} %s %d\n", strconv.FormatFloat(v, 'g', -1, 64), t)
		return b.String()
	})
	if err != nil {
		m.unavailable(w, r, err)
		return
	}
	if err := m.audit(r, c, audit.Allowed, len(lines)); err != nil {
		m.unavailable(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	for _, l := range lines {
		_, _ = io.WriteString(w, l.(string))
	}
}

// remoteRead serves Prometheus's remote-read protocol to operators. The
// request is decoded once for the audit record, then handed on intact.
func (m *metadata) remoteRead(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	if m.read == nil {
		writeAPIError(w, http.StatusNotImplemented, "unavailable", "the storage does not support remote read")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", "reading the request: "+err.Error())
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	req, err := remote.DecodeReadRequest(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", "decoding the request: "+err.Error())
		return
	}
	var qs []string
	for _, q := range req.Queries {
		ms, err := remote.FromLabelMatchers(q.Matchers)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, "bad_data", err.Error())
			return
		}
		qs = append(qs, fmt.Sprintf("%v [%d,%d]", ms, q.StartTimestampMs, q.EndTimestampMs))
	}
	r.Form = url.Values{"queries": {strings.Join(qs, "; ")}}
	if err := m.audit(r, c, audit.Allowed, 0); err != nil {
		m.unavailable(w, r, err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	m.read.ServeHTTP(w, r)
}

type metricMeta struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// metricMetadata describes metrics from the catalogue (nothing of the
// data): the ones the caller may query, or all of them for operators.
func (m *metadata) metricMetadata(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	f, ok := form(w, r)
	if !ok {
		return
	}
	var names []string
	if c.Audience == registry.Operator {
		for _, mt := range catalogue.All {
			names = append(names, mt.Name)
		}
	} else {
		names = gate.Visible(m.s.Registry(), c).Metrics
	}
	out := map[string][]metricMeta{}
	for _, n := range names {
		if want := f.Get("metric"); want != "" && want != n {
			continue
		}
		mt, _ := catalogue.Lookup(n)
		out[n] = []metricMeta{{Type: mt.Type, Help: mt.Help, Unit: mt.Unit}}
	}
	writeData(w, out)
}

// buildinfo lets Grafana's Prometheus data source connect; it is static.
func (m *metadata) buildinfo(w http.ResponseWriter, _ *http.Request, _ *config.Caller) {
	writeData(w, map[string]string{
		"version": compatVersion, "revision": "metergate", "branch": "", "buildUser": "",
		"buildDate": "", "goVersion": runtime.Version(),
	})
}

// formatQuery pretty-prints PromQL; it reads no data.
func (m *metadata) formatQuery(w http.ResponseWriter, r *http.Request, _ *config.Caller) {
	f, ok := form(w, r)
	if !ok {
		return
	}
	expr, err := m.parser.ParseExpr(f.Get("query"))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	writeData(w, parser.Prettify(expr))
}

func (m *metadata) exemplars(w http.ResponseWriter, _ *http.Request, _ *config.Caller) {
	// Ingestion stores no exemplars: the operator's answer is empty.
	writeData(w, []any{})
}

func (m *metadata) targets(w http.ResponseWriter, r *http.Request, _ *config.Caller) {
	// metergate scrapes nothing; data arrives by remote write.
	if strings.HasSuffix(r.URL.Path, "/metadata") {
		writeData(w, []any{})
		return
	}
	writeData(w, map[string]any{"activeTargets": []any{}, "droppedTargets": []any{}, "droppedTargetCounts": map[string]int{}})
}

func notServed(w http.ResponseWriter, _ *http.Request, _ *config.Caller) {
	writeAPIError(w, http.StatusNotFound, "not_found", "not served by metergate")
}

type ruleJSON struct {
	Name           string        `json:"name"`
	Query          string        `json:"query"`
	Type           string        `json:"type"`
	Health         string        `json:"health"`
	LastError      string        `json:"lastError,omitempty"`
	Labels         labels.Labels `json:"labels"`
	Annotations    labels.Labels `json:"annotations,omitempty"`
	Duration       float64       `json:"duration,omitempty"`
	State          string        `json:"state,omitempty"`
	Alerts         []alertJSON   `json:"alerts,omitempty"`
	EvaluationTime float64       `json:"evaluationTime"`
	LastEvaluation time.Time     `json:"lastEvaluation"`
}

type alertJSON struct {
	Labels      labels.Labels `json:"labels"`
	Annotations labels.Labels `json:"annotations"`
	State       string        `json:"state"`
	ActiveAt    *time.Time    `json:"activeAt,omitempty"`
	Value       string        `json:"value"`
}

type groupJSON struct {
	Name           string     `json:"name"`
	File           string     `json:"file"`
	Interval       float64    `json:"interval"`
	Rules          []ruleJSON `json:"rules"`
	EvaluationTime float64    `json:"evaluationTime"`
	LastEvaluation time.Time  `json:"lastEvaluation"`
}

func (m *metadata) ruleGroups(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	groups := []groupJSON{}
	if mgr := m.s.rules; mgr != nil {
		for _, g := range mgr.RuleGroups() {
			gj := groupJSON{Name: g.Name(), File: g.File(), Interval: g.Interval().Seconds(), Rules: []ruleJSON{},
				EvaluationTime: g.GetEvaluationTime().Seconds(), LastEvaluation: g.GetLastEvaluation()}
			for _, rl := range g.Rules() {
				rj := ruleJSON{Name: rl.Name(), Query: rl.Query().String(), Health: string(rl.Health()), Labels: rl.Labels(),
					EvaluationTime: rl.GetEvaluationDuration().Seconds(), LastEvaluation: rl.GetEvaluationTimestamp(), Type: "recording"}
				if err := rl.LastError(); err != nil {
					rj.LastError = err.Error()
				}
				if a, ok := rl.(*rules.AlertingRule); ok {
					rj.Type, rj.Annotations, rj.Duration, rj.State = "alerting", a.Annotations(), a.HoldDuration().Seconds(), a.State().String()
					rj.Alerts = alertsOf(a)
				}
				gj.Rules = append(gj.Rules, rj)
			}
			groups = append(groups, gj)
		}
	}
	if err := m.audit(r, c, audit.Allowed, len(groups)); err != nil {
		m.unavailable(w, r, err)
		return
	}
	writeData(w, map[string]any{"groups": groups})
}

func (m *metadata) alerts(w http.ResponseWriter, r *http.Request, c *config.Caller) {
	out := []alertJSON{}
	if mgr := m.s.rules; mgr != nil {
		for _, a := range mgr.AlertingRules() {
			out = append(out, alertsOf(a)...)
		}
	}
	if err := m.audit(r, c, audit.Allowed, len(out)); err != nil {
		m.unavailable(w, r, err)
		return
	}
	writeData(w, map[string]any{"alerts": out})
}

func alertsOf(a *rules.AlertingRule) []alertJSON {
	var out []alertJSON
	for _, al := range a.ActiveAlerts() {
		at := al.ActiveAt
		out = append(out, alertJSON{Labels: al.Labels, Annotations: al.Annotations, State: al.State.String(),
			ActiveAt: &at, Value: strconv.FormatFloat(al.Value, 'e', 10, 64)})
	}
	return out
}

// rangeAndMatchers reads start, end (default: all time) and match[].
func (m *metadata) rangeAndMatchers(w http.ResponseWriter, f url.Values, required bool) (int64, int64, [][]*labels.Matcher, bool) {
	mint, maxt := int64(math.MinInt64/2), int64(math.MaxInt64/2)
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"start", &mint}, {"end", &maxt}} {
		if s := f.Get(p.name); s != "" {
			t, err := parseAPITime(s)
			if err != nil {
				writeAPIError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("invalid parameter '%s': %v", p.name, err))
				return 0, 0, nil, false
			}
			*p.dst = timestamp.FromTime(t)
		}
	}
	var matchers [][]*labels.Matcher
	for _, s := range f["match[]"] {
		ms, err := m.parser.ParseMetricSelector(s)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, "bad_data", err.Error())
			return 0, 0, nil, false
		}
		matchers = append(matchers, ms)
	}
	if required && len(matchers) == 0 {
		writeAPIError(w, http.StatusBadRequest, "bad_data", "no match[] parameter provided")
		return 0, 0, nil, false
	}
	return mint, maxt, matchers, true
}

// parseAPITime reads a Unix timestamp (with fractions) or RFC 3339.
func parseAPITime(s string) (time.Time, error) {
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
	}
	return t, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeData(w http.ResponseWriter, data any) {
	b, err := json.Marshal(apiResponse{Status: "success", Data: data})
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal", "encoding the answer failed")
		return
	}
	writeBody(w, http.StatusOK, b)
}

func writeRefused(w http.ResponseWriter) { writeBody(w, http.StatusForbidden, refusedBody) }

func writeAPIError(w http.ResponseWriter, code int, typ, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
	}
	writeBody(w, code, mustJSON(apiResponse{Status: "error", ErrorType: typ, Error: msg}))
}

func writeBody(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
