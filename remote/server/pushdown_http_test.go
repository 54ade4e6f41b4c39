package server_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/enginestore/enginetest"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
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
