package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// Who knocks: every audience of servertest.Callers, no token, a wrong one.
const (
	public     = "public"
	restricted = "restricted"
	consented  = "consented"
	operator   = "operator"
	sender     = "sender"
	noToken    = "no token"
	wrongToken = "wrong token"
)

var knockers = []string{public, restricted, consented, operator, sender, noToken, wrongToken}

var tokenOf = map[string]string{
	public: st.PublicToken, restricted: st.RestrictedToken, consented: st.ConsentedToken,
	operator: st.OperatorToken, sender: st.SenderToken, noToken: "", wrongToken: "wrong-token-but-long-enough-0000",
}

// door is one endpoint and the status each knocker must get. Statuses
// not listed follow the defaults: 401 for a wrong token everywhere, and
// for no token and the sender on every read endpoint.
type door struct {
	name        string
	method      string
	path        string
	contentType string
	body        func(t *testing.T) string
	want        map[string]int
}

func readers(code int) map[string]int {
	return map[string]int{public: code, restricted: code, consented: code, operator: code}
}

func operatorOnly(op int) map[string]int {
	return map[string]int{public: http.StatusForbidden, restricted: http.StatusForbidden, consented: http.StatusForbidden, operator: op}
}

func with(m map[string]int, k string, v int) map[string]int {
	m[k] = v
	return m
}

// prmRe matches a 14-digit PRM anywhere (never part of a longer number).
var prmRe = regexp.MustCompile(`(^|[^0-9])[0-9]{14}([^0-9]|$)`)

// secrets are what no answer to a caller who may not see it contains:
// meter identities and raw series, registry membership, consent records
// and the audit log.
var secrets = []*regexp.Regexp{
	prmRe,
	regexp.MustCompile(`linky_index_wh|linky_load_curve_watts\{|"rmp":`),           // raw series, per-meter labels
	regexp.MustCompile(`"building"|"b1"|"concentrator"|"c0[1-3]"`),                 // registry placement
	regexp.MustCompile(`"granted"|"revoked"|use_case,granted|uc[1-5],20[0-9]{2}-`), // consent records (JSON or consents.csv rows)
	regexp.MustCompile(`"prev":|"decision":|"set_sizes"|"min_set"|venn|d\+2:`),     // audit records, refusal reasons
}

func TestEveryDoor(t *testing.T) {
	d := gatetest.Build(t)
	srv, _ := districtServer(t, d)
	day := gatetest.Day("2024-03-28")
	ts := strconv.FormatInt(day.End().Unix(), 10)
	sum := `sum(linky_consumption_daily_wh{perimeter="confluence"})`
	rr := func(t *testing.T) string {
		req := prompb.ReadRequest{Queries: []*prompb.Query{{StartTimestampMs: day.Start().UnixMilli(), EndTimestampMs: day.End().UnixMilli(),
			Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: labels.MetricName, Value: "linky_index_wh"}}}}}
		b, err := req.Marshal()
		require.NoError(t, err)
		return string(snappy.Encode(nil, b))
	}
	write := func(t *testing.T) string {
		return string(st.EncodeV1(t, []st.Series{{Labels: labels.FromStrings(labels.MetricName, "linky_concentrator_meters_installed", "concentrator", "c09"),
			// Stamped now: federation answers the last five minutes of wall time.
			Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}}}}))
	}
	open := map[string]int{public: 200, restricted: 200, consented: 200, operator: 200, sender: 200, noToken: 200}
	doors := []door{
		{name: "write", method: http.MethodPost, path: "/api/v1/write", contentType: st.ContentTypeV1, body: write,
			want: map[string]int{public: 401, restricted: 401, consented: 401, operator: 401, sender: 204}},
		// consented callers address consented perimeters only; the
		// operator's raw PromQL finds no stored series of a derived metric.
		{name: "query", method: http.MethodGet, path: "/api/v1/query?" + urlValues("query", sum, "time", ts),
			want: with(readers(200), consented, 403)},
		{name: "query_range", method: http.MethodGet, path: "/api/v1/query_range?" + urlValues("query", sum, "start", ts, "end", ts, "step", "86400"),
			want: with(readers(200), consented, 403)},
		{name: "labels", method: http.MethodGet, path: "/api/v1/labels", want: readers(200)},
		{name: "metric names", method: http.MethodGet, path: "/api/v1/label/__name__/values", want: readers(200)},
		{name: "perimeters", method: http.MethodGet, path: "/api/v1/label/perimeter/values", want: readers(200)},
		{name: "rmp values", method: http.MethodGet, path: "/api/v1/label/rmp/values", want: operatorOnly(200)},
		{name: "concentrator values", method: http.MethodGet, path: "/api/v1/label/concentrator/values", want: operatorOnly(200)},
		{name: "series", method: http.MethodGet, path: "/api/v1/series?" + urlValues("match[]", "linky_index_wh"), want: operatorOnly(200)},
		{name: "series by POST", method: http.MethodPost, path: "/api/v1/series", contentType: "application/x-www-form-urlencoded",
			body: func(*testing.T) string { return urlValues("match[]", `{__name__=~".+"}`) }, want: operatorOnly(200)},
		{name: "metadata", method: http.MethodGet, path: "/api/v1/metadata", want: readers(200)},
		{name: "federate", method: http.MethodGet, path: "/federate?" + urlValues("match[]", `{__name__=~".+"}`), want: operatorOnly(200)},
		{name: "remote read", method: http.MethodPost, path: "/api/v1/read", contentType: "application/x-protobuf", body: rr, want: operatorOnly(200)},
		{name: "buildinfo", method: http.MethodGet, path: "/api/v1/status/buildinfo", want: readers(200)},
		{name: "status tsdb", method: http.MethodGet, path: "/api/v1/status/tsdb", want: operatorOnly(404)},
		{name: "status config", method: http.MethodGet, path: "/api/v1/status/config", want: operatorOnly(404)},
		{name: "status flags", method: http.MethodGet, path: "/api/v1/status/flags", want: operatorOnly(404)},
		{name: "exemplars", method: http.MethodGet, path: "/api/v1/query_exemplars?" + urlValues("query", "linky_index_wh"), want: operatorOnly(200)},
		{name: "format_query", method: http.MethodGet, path: "/api/v1/format_query?" + urlValues("query", sum), want: readers(200)},
		{name: "targets", method: http.MethodGet, path: "/api/v1/targets", want: operatorOnly(200)},
		{name: "rules", method: http.MethodGet, path: "/api/v1/rules", want: operatorOnly(200)},
		{name: "alerts", method: http.MethodGet, path: "/api/v1/alerts", want: operatorOnly(200)},
		{name: "admin snapshot", method: http.MethodPost, path: "/api/v1/admin/tsdb/snapshot", want: operatorOnly(404)},
		{name: "admin delete", method: http.MethodPost, path: "/api/v1/admin/tsdb/delete_series?" + urlValues("match[]", "linky_index_wh"), want: operatorOnly(404)},
		{name: "metrics", method: http.MethodGet, path: "/metrics", want: operatorOnly(200)},
		{name: "healthy", method: http.MethodGet, path: "/-/healthy", want: open},
		{name: "ready", method: http.MethodGet, path: "/-/ready", want: open},
	}
	for _, dr := range doors {
		for _, who := range knockers {
			t.Run(dr.name+"/"+who, func(t *testing.T) {
				want, ok := dr.want[who]
				if !ok {
					want = http.StatusUnauthorized
				}
				body := ""
				if dr.body != nil {
					body = dr.body(t)
				}
				code, got := do(t, dr.method, srv.URL+dr.path, tokenOf[who], dr.contentType, body)
				require.Equal(t, want, code, got)
				if code == http.StatusForbidden {
					require.Equal(t, refusedJSON, got, "the one constant refusal")
				}
				if who == operator {
					return // operators may read everything
				}
				for _, re := range secrets {
					require.False(t, re.MatchString(got), "%s answered %q to %s: matches %s", dr.path, got, who, re)
				}
			})
		}
	}

	// The checks can fail: the operator's answers do hold what the
	// others must not see.
	code, body := do(t, http.MethodGet, srv.URL+"/api/v1/series?"+urlValues("match[]", "linky_index_wh"), st.OperatorToken, "", "")
	require.Equal(t, http.StatusOK, code)
	require.Regexp(t, prmRe, body)
	code, body = do(t, http.MethodPost, srv.URL+"/api/v1/read", st.OperatorToken, "application/x-protobuf", rr(t))
	require.Equal(t, http.StatusOK, code)
	raw, err := snappy.Decode(nil, []byte(body))
	require.NoError(t, err)
	var resp prompb.ReadResponse
	require.NoError(t, resp.Unmarshal(raw))
	require.Len(t, resp.Results, 1)
	require.Len(t, resp.Results[0].Timeseries, len(d.All()), "remote read returns every meter's index to the operator")
	code, body = do(t, http.MethodGet, srv.URL+"/federate?"+urlValues("match[]", "linky_concentrator_meters_installed"), st.OperatorToken, "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `linky_concentrator_meters_installed{concentrator="c09"} 1 `, "the sender's write is federated")

	// The operator's raw reads and everyone's knocks on closed doors are
	// in the audit log, whose chain holds.
	path := filepath.Join(srv.Dir, "audit.log")
	n, err := audit.Verify(path)
	require.NoError(t, err)
	require.Positive(t, n)
	log, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, want := range []string{`"query":"GET /api/v1/series?match%5B%5D=linky_index_wh","start":`, `"query":"POST /api/v1/read?queries=`, `"caller":"opendata"`, `"rule":"endpoint"`} {
		require.Contains(t, string(log), want)
	}
}

// TestReducedListings: what each audience learns from the listing
// endpoints is exactly what its queries may address.
func TestReducedListings(t *testing.T) {
	d := gatetest.Build(t)
	srv, _ := districtServer(t, d)
	for _, tc := range []struct {
		who, path string
		want      any
	}{
		{public, "/api/v1/labels", []any{"__name__", "cluster", "perimeter"}},
		{restricted, "/api/v1/labels", []any{"__name__", "cluster", "perimeter"}},
		{consented, "/api/v1/labels", []any{"__name__", "perimeter", "rmp"}},
		{public, "/api/v1/label/perimeter/values", []any{"cluster-k01", "confluence", "producers"}},
		{restricted, "/api/v1/label/perimeter/values", []any{"building-b1", "cluster-k01", "confluence", "producers"}},
		{consented, "/api/v1/label/perimeter/values", []any{"uc3-b1"}},
		{public, "/api/v1/label/__name__/values", []any{"ev_station_sessions_daily", "linky_consumption_daily_wh", "linky_injection_daily_wh", "producer_generation_daily_wh"}},
		{consented, "/api/v1/label/__name__/values", []any{"ev_station_charge_power_watts", "ev_station_sessions_daily", "linky_consumption_daily_wh", "linky_load_curve_watts"}},
		{public, "/api/v1/label/cluster/values", []any{"k01", "k02", "k03"}},
		{public, "/api/v1/format_query?" + urlValues("query", `sum by(cluster)(linky_consumption_daily_wh{perimeter="confluence"})`),
			`sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`},
		{operator, "/api/v1/label/perimeter/values", []any{}}, // the pseudo-label is on no stored series
	} {
		t.Run(tc.who+tc.path, func(t *testing.T) {
			code, body := do(t, http.MethodGet, srv.URL+tc.path, tokenOf[tc.who], "", "")
			require.Equal(t, http.StatusOK, code, body)
			var r struct {
				Status string `json:"status"`
				Data   any    `json:"data"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &r))
			require.Equal(t, "success", r.Status)
			require.Equal(t, tc.want, r.Data)
		})
	}
	// Metadata lists the same metrics, described from the catalogue.
	code, body := do(t, http.MethodGet, srv.URL+"/api/v1/metadata", st.PublicToken, "", "")
	require.Equal(t, http.StatusOK, code)
	var md struct {
		Data map[string][]map[string]string `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &md))
	require.Len(t, md.Data, 4)
	require.Equal(t, "Wh", md.Data["linky_consumption_daily_wh"][0]["unit"])
	code, body = do(t, http.MethodGet, srv.URL+"/api/v1/status/buildinfo", st.PublicToken, "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"version":"3.`)
}

// TestParameterGivenTwice: a parameter in the URL and the body, or
// repeated, is refused before anything is evaluated, on every endpoint
// that takes parameters (match[] is a list and may repeat).
func TestParameterGivenTwice(t *testing.T) {
	d := gatetest.Build(t)
	srv, _ := districtServer(t, d)
	ts := strconv.FormatInt(gatetest.Day("2024-03-28").End().Unix(), 10)
	sum := `sum(linky_consumption_daily_wh{perimeter="confluence"})`
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, method, path, body, token string
		want                            int
	}{
		{"query in URL and body", http.MethodPost, "/api/v1/query?" + urlValues("query", sum), urlValues("query", sum, "time", ts), st.PublicToken, 400},
		{"different queries in URL and body", http.MethodPost, "/api/v1/query?" + urlValues("query", sum), urlValues("query", "1", "time", ts), st.OperatorToken, 400},
		{"query repeated", http.MethodGet, "/api/v1/query?" + urlValues("query", sum, "query", sum, "time", ts), "", st.PublicToken, 400},
		{"time in URL and body", http.MethodPost, "/api/v1/query?" + urlValues("time", ts), urlValues("query", sum, "time", ts), st.PublicToken, 400},
		{"range start in URL and body", http.MethodPost, "/api/v1/query_range?" + urlValues("start", ts), urlValues("query", sum, "start", ts, "end", ts, "step", "86400"), st.PublicToken, 400},
		{"format_query in URL and body", http.MethodPost, "/api/v1/format_query?" + urlValues("query", sum), urlValues("query", sum), st.PublicToken, 400},
		{"label values start twice", http.MethodPost, "/api/v1/label/rmp/values?" + urlValues("start", ts), urlValues("start", ts), st.OperatorToken, 400},
		{"series end twice", http.MethodGet, "/api/v1/series?" + urlValues("match[]", "up", "end", ts, "end", ts), "", st.OperatorToken, 400},
		// Controls: once is fine, in the URL or the body; match[] repeats.
		{"query once in the body", http.MethodPost, "/api/v1/query", urlValues("query", sum, "time", ts), st.PublicToken, 200},
		{"query once in the URL", http.MethodPost, "/api/v1/query?" + urlValues("query", sum), urlValues("time", ts), st.PublicToken, 200},
		{"match[] repeated", http.MethodGet, "/api/v1/series?" + urlValues("match[]", "linky_index_wh", "match[]", "up"), "", st.OperatorToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, srv.URL+tc.path, tc.token, form, tc.body)
			require.Equal(t, tc.want, code, body)
			if tc.want == http.StatusBadRequest {
				require.Contains(t, body, "is given more than once")
				require.NotContains(t, body, "success")
			}
		})
	}
}

// TestRulesAndAlertsForOperators: the rule manager's groups and alerts in
// Prometheus's JSON shape.
func TestRulesAndAlertsForOperators(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeFile(dir+"/rules.yml", `groups:
- name: ops
  interval: 1s
  rules:
  - record: ops:one
    expr: vector(1)
  - alert: AlwaysFiring
    expr: vector(1) > 0
    labels: {severity: info}
    annotations: {summary: test}
`))
	srv := st.Start(t, st.Options{Dir: dir, Edit: func(c *config.Config) { c.RuleFiles = []string{"rules.yml"} }})
	var alerts struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	require.Eventually(t, func() bool {
		code, body := do(t, http.MethodGet, srv.URL+"/api/v1/alerts", st.OperatorToken, "", "")
		require.Equal(t, http.StatusOK, code, body)
		require.NoError(t, json.Unmarshal([]byte(body), &alerts))
		return len(alerts.Data.Alerts) == 1 && alerts.Data.Alerts[0].State == "firing"
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, "AlwaysFiring", alerts.Data.Alerts[0].Labels["alertname"])

	code, body := do(t, http.MethodGet, srv.URL+"/api/v1/rules", st.OperatorToken, "", "")
	require.Equal(t, http.StatusOK, code, body)
	var rules struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Name     string  `json:"name"`
				Interval float64 `json:"interval"`
				Rules    []struct {
					Name, Query, Type, Health string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &rules))
	require.Len(t, rules.Data.Groups, 1)
	g := rules.Data.Groups[0]
	require.Equal(t, "ops", g.Name)
	require.Equal(t, 1.0, g.Interval)
	require.Len(t, g.Rules, 2)
	require.Equal(t, "recording", g.Rules[0].Type)
	require.Equal(t, "alerting", g.Rules[1].Type)
	require.Equal(t, "vector(1) > 0", g.Rules[1].Query)
	require.True(t, strings.HasPrefix(g.Rules[0].Health, "ok") || g.Rules[0].Health == "unknown")

	code, body = do(t, http.MethodGet, srv.URL+"/api/v1/rules", st.PublicToken, "", "")
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, refusedJSON, body)
}
