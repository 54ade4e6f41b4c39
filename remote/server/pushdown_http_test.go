package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/enginestore/enginetest"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	rwsender "github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// engineReads counts, from an engine's own /metrics, the requests that
// read raw samples (export, remote read) and the PromQL queries it served.
func engineReads(t *testing.T, e *enginetest.Engine) (raw, queries float64) {
	t.Helper()
	resp, err := http.Get(e.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	metric := "prometheus_http_requests_total{"
	if e.Kind == "victoriametrics" {
		metric = "vm_http_requests_total{"
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		switch {
		case strings.Contains(line, `"/api/v1/export"`), strings.Contains(line, `"/api/v1/read"`):
			raw += v
		case strings.Contains(line, `"/api/v1/query"`), strings.Contains(line, `"/api/v1/query_range"`):
			queries += v
		}
	}
	require.NoError(t, sc.Err())
	return raw, queries
}

// settledEngineReads is engineReads once two reads half a second apart
// agree: VictoriaMetrics' request counters can lag the requests by a
// second or more (seen: /api/v1/query at 0 right after 98 answered
// queries, at 98 a moment later; the previous subtest's 49 exports
// counted only after this one began).
func settledEngineReads(t *testing.T, e *enginetest.Engine) (raw, queries float64) {
	t.Helper()
	raw, queries = engineReads(t, e)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		r, q := engineReads(t, e)
		if r == raw && q == queries {
			return raw, queries
		}
		raw, queries = r, q
	}
	t.Fatalf("%s's request counters did not settle in 15 s", e.Kind)
	return raw, queries
}

// TestEdgesOverEngines: the daily energy the engines compute for the gate
// (readings at the tolerance's bounds, several samples in a window, split,
// agreeing and disagreeing series, a falling or flat index, stale markers,
// 23- and 25-hour days) is the gate's own definition, RMP by RMP, on
// VictoriaMetrics 1.79.5 (whose range windows leave out their left bound)
// and Prometheus 2.42 (whose windows keep it); so are sums and quartiles.
// The same server reading raw samples (evaluate: gate) answers the same.
func TestEdgesOverEngines(t *testing.T) {
	e := gatetest.BuildEdges(5 * time.Minute)
	for _, engine := range []*enginetest.Engine{enginetest.VictoriaMetrics(t), enginetest.Prometheus(t)} {
		t.Run(engine.Kind, func(t *testing.T) {
			var srv *st.Instance
			for _, evaluate := range []string{config.EvaluateEngine, config.EvaluateGate} {
				srv = st.Start(t, st.Options{
					Registry: e.Registry,
					Server:   server.Options{Now: func() time.Time { return e.Now }},
					Edit: func(cfg *config.Config) {
						remoteEngine(engineOptions(engine, ""))(cfg)
						cfg.Storage.Remote.Evaluate = evaluate
					},
				})
				if evaluate == config.EvaluateEngine {
					var batch []st.Series
					for _, s := range e.Samples {
						batch = append(batch, st.Series{Labels: s.Labels, Samples: []prompb.Sample{{Timestamp: s.T, Value: s.V}}})
					}
					code, body := st.WriteV1(t, srv.URL, st.SenderToken, batch...)
					require.Equal(t, http.StatusNoContent, code, body)
					drain(t, srv, engine)
				}
				for _, c := range e.Cases() {
					token := st.RestrictedToken
					if c.Audience == registry.Consented {
						token = st.ConsentedToken
					}
					code, r := st.Query(t, srv.URL, token, c.Query, c.Day.End())
					require.Equal(t, http.StatusOK, code, "%s: %s", c.Name, r.Error)
					got, _ := points(t, r)
					require.Equal(t, c.Want, got, "%s (evaluate: %s)", c.Name, evaluate)
				}
			}
		})
	}
}

// TestSimulatedDistrictOverEngines: the simulator writes two days of the
// generated Confluence (7,692 meters, 30 clusters, quartile-only household
// perimeters, buildings, consents) through metergate into the embedded
// TSDB and into VictoriaMetrics 1.79.5 and Prometheus 2.42; public,
// restricted and consented queries over its perimeters, the engines
// computing, answer byte for byte what the embedded server answers.
func TestSimulatedDistrictOverEngines(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates the whole district")
	}
	until := localday.Of(time.Now()).AddDays(-3)
	reg, err := district.Generate(district.Options{Seed: 7, Until: until})
	require.NoError(t, err)
	simulate := func(srv *st.Instance) {
		s, err := rwsender.New(rwsender.Config{URL: srv.URL + "/api/v1/write", Token: st.SenderToken})
		require.NoError(t, err)
		_, err = district.Simulate(context.Background(), reg, district.Config{Model: district.ModelOptions{Seed: 7, Until: until}, Days: 3}, s)
		require.NoError(t, err)
		require.NoError(t, s.Close(context.Background()))
	}
	embedded := st.Start(t, st.Options{Registry: reg})
	simulate(embedded)

	// A sample of every kind of perimeter, by the caller who may read it.
	type query struct{ token, q string }
	var queries []query
	seen := map[string]int{}
	for _, p := range reg.Perimeters {
		kind := p.Name
		if i := strings.IndexAny(kind, "-"); i > 0 {
			kind = kind[:i]
		}
		if seen[kind]++; seen[kind] > 2 {
			continue
		}
		metric := "linky_consumption_daily_wh"
		if p.Flow == "production" {
			metric = "linky_injection_daily_wh"
		}
		sel := fmt.Sprintf("%s{perimeter=%q}", metric, p.Name)
		token := st.PublicToken
		switch p.Audience {
		case registry.Restricted:
			token = st.RestrictedToken
		case registry.Consented:
			if p.UseCase == registry.UC3 {
				queries = append(queries, query{st.ConsentedToken, sel}, query{st.ConsentedToken, "sum(" + sel + ")"})
			}
			continue
		}
		if p.Publishes("sum") {
			queries = append(queries, query{token, "sum(" + sel + ")"})
			if len(p.GroupBy) > 0 {
				queries = append(queries, query{token, fmt.Sprintf("sum by (%s) (%s)", strings.Join(p.GroupBy, ","), sel)})
			}
		}
		if p.Publishes("quartile") {
			queries = append(queries, query{token, "quantile(0.25, " + sel + ")"}, query{token, "quantile(0.5, " + sel + ")"})
		}
	}
	params := func(q string) string {
		return url.Values{"query": {q}, "start": {fmt.Sprint(until.AddDays(-2).End().Unix())}, "end": {fmt.Sprint(until.End().Unix())}, "step": {"86400"}}.Encode()
	}
	published := 0
	want := map[string]string{}
	for _, q := range queries {
		code, body := do(t, http.MethodGet, embedded.URL+"/api/v1/query_range?"+params(q.q), q.token, "", "")
		require.Equal(t, http.StatusOK, code, "%s: %s", q.q, body)
		want[q.q] = body
		if strings.Contains(body, `"values":[[`) {
			published++
		}
	}
	require.Greater(t, published, len(queries)/2, "most of the sample publishes something")
	t.Logf("%d queries over %d perimeter kinds, %d publishing something", len(queries), len(seen), published)

	for _, engine := range []*enginetest.Engine{enginetest.VictoriaMetrics(t), enginetest.Prometheus(t)} {
		t.Run(engine.Kind, func(t *testing.T) {
			srv := st.Start(t, st.Options{Registry: reg, Edit: remoteEngine(engineOptions(engine, ""))})
			simulate(srv)
			drain(t, srv, engine)
			raw, _ := settledEngineReads(t, engine)
			for _, q := range queries {
				code, body := do(t, http.MethodGet, srv.URL+"/api/v1/query_range?"+params(q.q), q.token, "", "")
				require.Equal(t, http.StatusOK, code, "%s: %s", q.q, body)
				require.Equal(t, want[q.q], body, q.q)
			}
			after, _ := settledEngineReads(t, engine)
			require.Equal(t, raw, after, "the engine computed: no raw sample read")
		})
	}
}
