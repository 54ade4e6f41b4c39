package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/enginestore"
	"github.com/metergate/metergate/pkg/enginestore/enginetest"
	"github.com/metergate/metergate/pkg/localday"
	rwsender "github.com/metergate/metergate/remote/sender"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// BenchmarkPushdown: the simulated Confluence (7,692 meters) for 30 days
// in VictoriaMetrics 1.79.5 and Prometheus 2.42, and public range queries
// over those days answered by one server whose engine computes (evaluate:
// engine) and one whose gate reads the raw samples (evaluate: gate, by
// export or remote read). Both answers are required equal before timing.
// docs/scaling.md quotes it.
func BenchmarkPushdown(b *testing.B) {
	b.Run("victoriametrics", func(b *testing.B) { benchPushdown(b, enginetest.VictoriaMetrics(b)) })
	b.Run("prometheus", func(b *testing.B) { benchPushdown(b, enginetest.Prometheus(b)) })
}

func benchPushdown(b *testing.B, vm *enginetest.Engine) {
	const days = 30
	until := localday.Of(time.Now()).AddDays(-3)
	reg, err := district.Generate(district.Options{Seed: 1, Until: until})
	require.NoError(b, err)
	servers := map[string]*st.Instance{}
	for _, evaluate := range []string{config.EvaluateEngine, config.EvaluateGate} {
		servers[evaluate] = st.Start(b, st.Options{Registry: reg, Edit: func(cfg *config.Config) {
			remoteEngine(engineOptions(vm, ""))(cfg)
			cfg.Storage.Remote.Evaluate = evaluate
			cfg.Query.MaxSamples = 500_000_000
		}})
	}
	s, err := rwsender.New(rwsender.Config{URL: servers[config.EvaluateEngine].URL + "/api/v1/write", Token: st.SenderToken})
	require.NoError(b, err)
	start := time.Now()
	res, err := district.Simulate(context.Background(), reg, district.Config{Model: district.ModelOptions{Seed: 1, Until: until}, Days: days}, s)
	require.NoError(b, err)
	require.NoError(b, s.Close(context.Background()))
	es := servers[config.EvaluateEngine].Server.Store().(*enginestore.Store)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	require.NoError(b, es.Queue().Drained(ctx))
	require.NoError(b, vm.Flush())
	b.Logf("%d days, %d samples written through metergate into VictoriaMetrics in %s", res.Days, res.Samples, time.Since(start).Round(time.Second))

	households := ""
	for _, p := range reg.Perimeters {
		if strings.HasPrefix(p.Name, "households-") {
			households = p.Name
			break
		}
	}
	from, to := until.AddDays(-days+1), until
	for _, q := range []struct{ name, query string }{
		{"district sum by cluster", `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`},
		{"households median", fmt.Sprintf(`quantile(0.5, linky_consumption_daily_wh{perimeter=%q})`, households)},
	} {
		params := url.Values{"query": {q.query}, "start": {fmt.Sprint(from.End().Unix())}, "end": {fmt.Sprint(to.End().Unix())}, "step": {"86400"}}
		ask := func(b *testing.B, evaluate string) string {
			req, err := http.NewRequest(http.MethodGet, servers[evaluate].URL+"/api/v1/query_range?"+params.Encode(), nil)
			require.NoError(b, err)
			req.Header.Set("Authorization", "Bearer "+st.PublicToken)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(b, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(b, err)
			require.Equal(b, http.StatusOK, resp.StatusCode, "%s", body)
			return string(body)
		}
		require.Equal(b, ask(b, config.EvaluateGate), ask(b, config.EvaluateEngine), q.name)
		require.Contains(b, ask(b, config.EvaluateEngine), `"values":[[`, "%s: something is published", q.name)
		for _, evaluate := range []string{config.EvaluateEngine, config.EvaluateGate} {
			b.Run(q.name+"/"+evaluate, func(b *testing.B) {
				for b.Loop() {
					ask(b, evaluate)
				}
			})
		}
	}
}
