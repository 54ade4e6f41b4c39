package server_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// refusedJSON is the whole body of every refusal: constant, no set size,
// no rule.
const refusedJSON = `{"status":"error","errorType":"forbidden","error":"query refused by the privacy policy"}`

const suppressedWarning = "hidden to protect privacy: fewer than the required meters"

// districtStore lends the district's TSDB to a server. gatetest.Build
// registers its own db.Close, and the server closes its store on Stop:
// tsdb.DB.Close tolerates a second call (v0.316.0), but the district owns
// the DB, so the server's Close leaves it alone rather than rely on that.
type districtStore struct{ *store.Embedded }

func (districtStore) Close() error { return nil }

// callerKey names the (audience, use cases) combination of a case.
func callerKey(a registry.Audience, ucs []registry.UseCase) string {
	var s []string
	for _, uc := range ucs {
		s = append(s, string(uc))
	}
	return string(a) + "/" + strings.Join(s, ",")
}

// districtServer starts a server over the district with one caller per
// (audience, use cases) combination of gatetest.Cases, and returns the
// tokens by combination. Combinations the configuration refuses (an
// unknown audience) get no token.
func districtServer(t *testing.T, d *gatetest.District) (*st.Instance, map[string]string) {
	t.Helper()
	callers, tokens := tableCallers()
	srv := st.Start(t, st.Options{
		Registry: d.Registry,
		Server: server.Options{
			Store: districtStore{&store.Embedded{DB: d.DB}},
			Now:   func() time.Time { return d.Now },
		},
		Edit: func(cfg *config.Config) { cfg.Callers = append(callers, st.Callers...) },
	})
	return srv, tokens
}

// points reads a vector or matrix answer as label set → value (instant)
// or label set → timestamp (ms) → value (range), parsing the JSON numbers.
func points(t *testing.T, r st.QueryResponse) (map[string]float64, map[string]map[int64]float64) {
	t.Helper()
	inst, rng := map[string]float64{}, map[string]map[int64]float64{}
	for _, s := range r.Data.Result {
		k := labels.FromMap(s.Metric).String()
		if s.Value != nil {
			require.Len(t, s.Value, 2)
			v, err := strconv.ParseFloat(s.Value[1].(string), 64)
			require.NoError(t, err)
			inst[k] = v
		}
		for _, p := range s.Values {
			require.Len(t, p, 2)
			v, err := strconv.ParseFloat(p[1].(string), 64)
			require.NoError(t, err)
			if rng[k] == nil {
				rng[k] = map[int64]float64{}
			}
			rng[k][int64(p[0].(float64)*1000)] = v
		}
	}
	return inst, rng
}

// TestCasesOverHTTP runs every row of the policy and attack table as an
// instant query against a running server.
func TestCasesOverHTTP(t *testing.T) {
	d := gatetest.Build(t)
	srv, tokens := districtServer(t, d)
	// The in-process gate over the same data says which answers carry
	// warnings (a consent that does not cover is absence, not suppression).
	oracle, err := gate.New(gate.Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: d.DB, Now: func() time.Time { return d.Now }})
	require.NoError(t, err)

	suppressed := 0
	for _, c := range gatetest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			token := tokens[callerKey(c.Audience, c.UseCases)]
			if token == "" {
				// An audience the configuration refuses cannot be given a
				// token: over HTTP such a caller is nobody.
				require.True(t, c.Refused)
				code, r := st.Query(t, srv.URL, "", c.Query, c.Day.End())
				require.Equal(t, http.StatusUnauthorized, code, r.Error)
				return
			}
			code, body := rawQuery(t, srv.URL, token, c.Query, c.Day.End())
			if c.Refused {
				require.Equal(t, http.StatusForbidden, code, body)
				require.JSONEq(t, refusedJSON, body)
				require.Equal(t, refusedJSON, body, "byte for byte")
				return
			}
			require.Equal(t, http.StatusOK, code, body)
			_, r := st.Query(t, srv.URL, token, c.Query, c.Day.End())
			require.Equal(t, "success", r.Status)
			require.Equal(t, "vector", r.Data.ResultType)
			got, _ := points(t, r)
			want := c.Want(d)
			require.Equal(t, want, got, "exact values, recomputed from raw samples")
			for _, s := range r.Data.Result {
				require.Equal(t, float64(c.Day.End().UnixMilli())/1000, s.Value[0], "stamped at the evaluation time")
			}

			res, err := oracle.Exec(context.Background(), &config.Caller{Name: "oracle", Audience: c.Audience, UseCases: c.UseCases},
				gate.Request{Query: c.Query, Start: c.Day.End(), End: c.Day.End()})
			require.NoError(t, err)
			wantWarnings, _ := res.Annotations.AsStrings(c.Query, 10, 10)
			require.ElementsMatch(t, wantWarnings, r.Warnings)
			if len(want) == 0 && c.Audience != registry.Consented {
				require.Contains(t, r.Warnings, suppressedWarning, "every point hidden: the reader is told")
			}
			if slices.Contains(r.Warnings, suppressedWarning) {
				suppressed++
			}
		})
	}
	require.GreaterOrEqual(t, suppressed, 6, "the table's suppression cases reached the HTTP warnings")
}

// rawQuery returns the exact body of an instant query.
func rawQuery(t *testing.T, base, token, q string, ts time.Time) (int, string) {
	t.Helper()
	return do(t, http.MethodGet, base+"/api/v1/query?"+urlValues("query", q, "time", strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64)), token, "", "")
}

// TestRangeOverShortAndLongDays: a range query answers one point per
// local midnight, so the 23-hour day of March and the 25-hour day of
// October each give one point, with the day's own energy.
func TestRangeOverShortAndLongDays(t *testing.T) {
	d := gatetest.Build(t)
	srv, _ := districtServer(t, d)
	producers := `quantile(0.5, linky_injection_daily_wh{perimeter="producers"})`
	confluence := `sum(linky_consumption_daily_wh{perimeter="confluence"})`
	for _, tc := range []struct {
		name       string
		query      string
		metric     string
		prms       []string
		q          float64
		from, to   string // first and last midnight of the range
		days       []string
		spacing    []time.Duration // between consecutive points
		suppressed bool
	}{
		{"23-hour day", producers, catalogue.IndexInjection, d.Producers, 0.5, "2024-03-30", "2024-04-02",
			[]string{"2024-03-29", "2024-03-30", "2024-03-31", "2024-04-01"}, []time.Duration{24 * time.Hour, 23 * time.Hour, 24 * time.Hour}, false},
		{"25-hour day", producers, catalogue.IndexInjection, d.Producers, 0.5, "2024-10-26", "2024-10-29",
			[]string{"2024-10-25", "2024-10-26", "2024-10-27", "2024-10-28"}, []time.Duration{24 * time.Hour, 25 * time.Hour, 24 * time.Hour}, false},
		{"hidden days are absent", confluence, catalogue.IndexConsumption, d.All(), -1, "2024-03-29", "2024-04-02",
			[]string{"2024-03-28", "2024-03-31", "2024-04-01"}, []time.Duration{71 * time.Hour, 24 * time.Hour}, true}, // 03-29 00:00 to 04-01 00:00 spans the 23-hour day,
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to := gatetest.Day(tc.from).Start(), gatetest.Day(tc.to).Start()
			code, r := st.QueryRange(t, srv.URL, st.PublicToken, tc.query, from, to, 24*time.Hour)
			require.Equal(t, http.StatusOK, code, r.Error)
			require.Equal(t, "matrix", r.Data.ResultType)
			_, got := points(t, r)
			require.Len(t, got, 1)
			series := got["{}"]
			var ts []int64
			for ms := range series {
				ts = append(ts, ms)
			}
			slices.Sort(ts)
			var days []string
			for i, ms := range ts {
				at := time.UnixMilli(ms)
				require.Equal(t, localday.Of(at).Start(), at.In(localday.Paris), "points sit on local midnights")
				day := localday.Of(at).AddDays(-1)
				days = append(days, day.String())
				want, _ := d.Expected(tc.metric, tc.prms, day, tc.q)
				require.Equal(t, want, series[ms], day.String())
				if i > 0 {
					require.Equal(t, tc.spacing[i-1], at.Sub(time.UnixMilli(ts[i-1])))
				}
			}
			require.Equal(t, tc.days, days)
			if tc.suppressed {
				require.Equal(t, []string{suppressedWarning}, r.Warnings)
			} else {
				require.Empty(t, r.Warnings)
			}
		})
	}
}

// do sends one request and returns the status and the exact body.
func do(t *testing.T, method, url, token, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// urlValues encodes name, value pairs in order (repeats allowed).
func urlValues(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, url.QueryEscape(kv[i])+"="+url.QueryEscape(kv[i+1]))
	}
	return strings.Join(parts, "&")
}
