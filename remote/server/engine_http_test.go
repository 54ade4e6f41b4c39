package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/enginestore"
	"github.com/metergate/metergate/pkg/enginestore/enginetest"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// remoteEngine points a test server's configuration at an engine, with
// short backoffs so that tests see recovery quickly.
func remoteEngine(e *enginestore.Options) func(*config.Config) {
	return func(cfg *config.Config) {
		cfg.Storage.Engine = config.EngineRemote
		cfg.Storage.Remote = config.RemoteStorage{
			Kind: string(e.Kind), WriteURL: e.WriteURL, ReadURL: e.ReadURL, ReadProtocol: string(e.ReadProtocol),
			QueueDir: "queue", MinBackoff: model.Duration(20 * time.Millisecond), MaxBackoff: model.Duration(300 * time.Millisecond),
		}
	}
}

func engineOptions(e *enginetest.Engine, p enginestore.ReadProtocol) *enginestore.Options {
	return &enginestore.Options{Kind: enginestore.Kind(e.Kind), WriteURL: e.WriteURL, ReadURL: e.ReadURL, ReadProtocol: p}
}

// tableCallers gives one caller per (audience, use cases) combination of
// gatetest.Cases, with the tokens districtServer gives them, so that one
// token asks the same question of the embedded and the remote server.
func tableCallers() ([]config.Caller, map[string]string) {
	tokens := map[string]string{}
	var callers []config.Caller
	for _, c := range gatetest.Cases {
		k := callerKey(c.Audience, c.UseCases)
		if _, ok := tokens[k]; ok {
			continue
		}
		cl := config.Caller{Name: fmt.Sprintf("case-%d", len(callers)), Token: fmt.Sprintf("case-token-%02d-0123456789", len(callers)),
			Audience: c.Audience, UseCases: c.UseCases}
		probe := config.Defaults()
		probe.Callers = []config.Caller{cl}
		if probe.Validate() != nil {
			tokens[k] = ""
			continue
		}
		tokens[k] = cl.Token
		callers = append(callers, cl)
	}
	return callers, tokens
}

// districtOverEngine starts a server over the engine with the callers of
// gatetest.Cases and the district's registry.
func districtOverEngine(t *testing.T, d *gatetest.District, o *enginestore.Options, edit func(*config.Config)) (*st.Instance, map[string]string) {
	t.Helper()
	callers, tokens := tableCallers()
	srv := st.Start(t, st.Options{
		Registry: d.Registry,
		Server:   server.Options{Now: func() time.Time { return d.Now }},
		Edit: func(cfg *config.Config) {
			cfg.Callers = append(callers, st.Callers...)
			remoteEngine(o)(cfg)
			if edit != nil {
				edit(cfg)
			}
		},
	})
	return srv, tokens
}

// writeDistrict sends every series of the district through the server's
// remote-write endpoint (so through the catalogue and consent checks and
// the forward queue), then waits until the engine has confirmed it all.
func writeDistrict(t *testing.T, d *gatetest.District, srv *st.Instance, e *enginetest.Engine) {
	t.Helper()
	q, err := d.DB.Querier(0, 1<<62)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	var batch []st.Series
	refused := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		code, body := st.WriteV1(t, srv.URL, st.SenderToken, batch...)
		if code == http.StatusBadRequest {
			// Load curves of meters without consent at the time are
			// refused at ingestion; everything else is stored.
			refused++
		} else {
			require.Equal(t, http.StatusNoContent, code, body)
		}
		batch = batch[:0]
	}
	for set.Next() {
		s := st.Series{Labels: set.At().Labels()}
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts, Value: v})
		}
		batch = append(batch, s)
		if len(batch) == 40 {
			flush()
		}
	}
	require.NoError(t, set.Err())
	flush()
	t.Logf("district written; %d batches partly refused (curves without consent)", refused)
	drain(t, srv, e)
}

func drain(t *testing.T, srv *st.Instance, e *enginetest.Engine) {
	t.Helper()
	es, ok := srv.Server.Store().(*enginestore.Store)
	require.True(t, ok, "the server runs over the engine")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, es.Queue().Drained(ctx))
	require.NoError(t, e.Flush())
}

// TestCasesOverEngines: the policy and attack table of the embedded mode
// (gatetest.Cases) and its range queries over the short and long days,
// through servers whose data live in real engines, answer byte for byte
// what the embedded server answers.
func TestCasesOverEngines(t *testing.T) {
	d := gatetest.Build(t)
	embedded, tokens := districtServer(t, d)
	vm := enginetest.VictoriaMetrics(t)
	prom := enginetest.Prometheus(t)

	for _, tc := range []struct {
		name     string
		engine   *enginetest.Engine
		read     enginestore.ReadProtocol
		write    bool
		evaluate string // who computes the aggregates: config.EvaluateGate or EvaluateEngine
	}{
		{"victoriametrics export", vm, enginestore.Export, true, config.EvaluateGate},
		{"prometheus remote read", prom, enginestore.RemoteRead, true, config.EvaluateGate},
		{"prometheus query api (as Thanos Query is read)", prom, enginestore.QueryAPI, false, config.EvaluateGate},
		// The engines compute daily energies, counts, cells, sums, maxima
		// and quartiles (gate.Pushdown); the answers must not change.
		{"victoriametrics computes", vm, enginestore.Export, false, config.EvaluateEngine},
		{"prometheus 2.42 computes", prom, enginestore.RemoteRead, false, config.EvaluateEngine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := districtOverEngine(t, d, engineOptions(tc.engine, tc.read), func(cfg *config.Config) { cfg.Storage.Remote.Evaluate = tc.evaluate })
			if tc.write {
				writeDistrict(t, d, srv, tc.engine)
			}
			rawBefore, queriesBefore := settledEngineReads(t, tc.engine)
			defer func() {
				if t.Failed() || tc.evaluate != config.EvaluateEngine {
					return
				}
				raw, queries := settledEngineReads(t, tc.engine)
				require.Greater(t, queries, queriesBefore, "the engine answered the gate's queries")
				require.Equal(t, rawBefore, raw, "no raw sample read: the engine computed")
				require.NotContains(t, metrics(t, srv.URL), `metergate_engine_queries_total{outcome="ok"} 0`+"\n")
			}()
			for _, c := range gatetest.Cases {
				token := tokens[callerKey(c.Audience, c.UseCases)]
				if token == "" {
					continue // no token can carry this audience; TestCasesOverHTTP covers the 401
				}
				wantCode, wantBody := rawQuery(t, embedded.URL, token, c.Query, c.Day.End())
				code, body := rawQuery(t, srv.URL, token, c.Query, c.Day.End())
				require.Equal(t, wantCode, code, "%s: %s", c.Name, body)
				require.Equal(t, wantBody, body, c.Name)
				if !c.Refused {
					_, r := st.Query(t, srv.URL, token, c.Query, c.Day.End())
					got, _ := points(t, r)
					require.Equal(t, c.Want(d), got, "%s: exact values, recomputed from raw samples", c.Name)
				}
			}
			for _, q := range []struct{ query, from, to string }{
				{`quantile(0.5, linky_injection_daily_wh{perimeter="producers"})`, "2024-03-30", "2024-04-02"},
				{`quantile(0.5, linky_injection_daily_wh{perimeter="producers"})`, "2024-10-26", "2024-10-29"},
				{`sum(linky_consumption_daily_wh{perimeter="confluence"})`, "2024-03-29", "2024-04-02"},
			} {
				params := urlValues("query", q.query, "start", fmt.Sprint(gatetest.Day(q.from).Start().Unix()),
					"end", fmt.Sprint(gatetest.Day(q.to).Start().Unix()), "step", "86400")
				wantCode, wantBody := do(t, http.MethodGet, embedded.URL+"/api/v1/query_range?"+params, st.PublicToken, "", "")
				code, body := do(t, http.MethodGet, srv.URL+"/api/v1/query_range?"+params, st.PublicToken, "", "")
				require.Equal(t, wantCode, code, body)
				require.Equal(t, wantBody, body, q.query)
			}
			// Label values offered to a public reader come from the engine too.
			wantCode, wantBody := do(t, http.MethodGet, embedded.URL+"/api/v1/label/__name__/values", st.PublicToken, "", "")
			code, body := do(t, http.MethodGet, srv.URL+"/api/v1/label/__name__/values", st.PublicToken, "", "")
			require.Equal(t, wantCode, code, body)
			require.JSONEq(t, wantBody, body)
		})
	}
}

// exportRaw reads every raw sample of a metric straight from
// VictoriaMetrics (no deduplication configured), as (series, ms) → count.
func exportRaw(t *testing.T, e *enginetest.Engine, metric string) map[string]int {
	t.Helper()
	resp, err := http.Get(e.URL + "/api/v1/export?" + url.Values{"match[]": {fmt.Sprintf("{__name__=%q}", metric)}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got := map[string]int{}
	dec := json.NewDecoder(resp.Body)
	for {
		var l struct {
			Metric     map[string]string `json:"metric"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		for _, ts := range l.Timestamps {
			got[fmt.Sprintf("%s@%d", l.Metric[catalogue.LabelRMP], ts)]++
		}
	}
	return got
}

// TestEngineOutageLosesNothing: the engine stops in the middle of the
// ingestion and metergate itself restarts while the engine is down;
// every write acknowledged with 204 reaches the engine exactly once.
func TestEngineOutageLosesNothing(t *testing.T) {
	vm := enginetest.VictoriaMetrics(t)
	dir := t.TempDir()
	edit := remoteEngine(engineOptions(vm, ""))
	srv := st.Start(t, st.Options{Dir: dir, Edit: edit})

	day := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	acked := map[string]int{}
	write := func(batch int) {
		var series []st.Series
		for m := range 20 {
			rmp := fmt.Sprintf("%014d", 30000000000000+m)
			ts := day.Add(time.Duration(batch) * time.Hour).UnixMilli()
			series = append(series, st.Series{
				Labels:  labels.FromStrings(labels.MetricName, catalogue.IndexConsumption, catalogue.LabelRMP, rmp),
				Samples: []prompb.Sample{{Timestamp: ts, Value: float64(1000*batch + m)}},
			})
		}
		code, body := st.WriteV1(t, srv.URL, st.SenderToken, series...)
		require.Equal(t, http.StatusNoContent, code, "batch %d: %s", batch, body)
		for _, s := range series {
			acked[fmt.Sprintf("%s@%d", s.Labels.Get(catalogue.LabelRMP), s.Samples[0].Timestamp)]++
		}
	}
	for b := range 10 {
		write(b)
	}
	// Stopped between batches: a batch in flight when the engine stops may
	// be stored and sent again (delivery is at least once, docs/scaling.md),
	// which the exact count below would take for a loss of exactness.
	drain(t, srv, vm)
	vm.Stop()
	for b := 10; b < 25; b++ {
		write(b) // acknowledged from the disk queue while the engine is down
	}
	es := srv.Server.Store().(*enginestore.Store)
	require.Positive(t, es.Queue().Len(), "batches wait on disk")

	// metergate restarts while the engine is still down: the queue
	// resumes from disk.
	require.NoError(t, srv.Stop())
	srv = st.Start(t, st.Options{Dir: dir, Edit: edit})
	for b := 25; b < 30; b++ {
		write(b)
	}
	vm.Start()
	for b := 30; b < 40; b++ {
		write(b)
	}
	drain(t, srv, vm)
	require.Equal(t, acked, exportRaw(t, vm, catalogue.IndexConsumption), "every acknowledged sample once, nothing else")
	require.Len(t, acked, 40*20)
}

// TestTwoServersShareRegistryAndEngine: two stateless servers over one
// engine and one registry directory; a consent revoked in the shared
// registry is enforced by both on their next query, and each keeps its own
// hash-chained audit log in the shared directory.
func TestTwoServersShareRegistryAndEngine(t *testing.T) {
	d := gatetest.Build(t)
	vm := enginetest.VictoriaMetrics(t)
	shared := t.TempDir()
	regDir := filepath.Join(shared, "registry")
	require.NoError(t, registry.Save(regDir, d.Registry))
	sharedCfg := func(name string) func(*config.Config) {
		return func(cfg *config.Config) {
			cfg.RegistryDir = regDir
			cfg.RegistryCheckInterval = model.Duration(time.Millisecond)
			cfg.AuditLog = filepath.Join(shared, "audit", name+".log")
		}
	}
	require.NoError(t, os.MkdirAll(filepath.Join(shared, "audit"), 0o755))
	a, _ := districtOverEngine(t, d, engineOptions(vm, ""), sharedCfg("a"))
	b, _ := districtOverEngine(t, d, engineOptions(vm, ""), sharedCfg("b"))
	writeDistrict(t, d, a, vm)

	q := `linky_consumption_daily_wh{perimeter="uc3-b1"}`
	at := gatetest.Day("2024-03-28").End()
	rmps := func(srv *st.Instance) []string {
		code, r := st.Query(t, srv.URL, st.ConsentedToken, q, at)
		require.Equal(t, http.StatusOK, code, r.Error)
		var out []string
		for _, s := range r.Data.Result {
			out = append(out, s.Metric[catalogue.LabelRMP])
		}
		return out
	}
	target := d.Consenting[0]
	require.Contains(t, rmps(a), target)
	require.Contains(t, rmps(b), target)

	// The consent office revokes the consent in the shared registry
	// (registry.Save replaces each file atomically).
	revoked := *d.Registry
	revoked.Consents = append([]registry.Consent(nil), d.Registry.Consents...)
	for i := range revoked.Consents {
		if revoked.Consents[i].PRM == target {
			revoked.Consents[i].Revoked = d.Now.Add(-time.Hour)
		}
	}
	require.NoError(t, registry.Save(regDir, &revoked))
	time.Sleep(5 * time.Millisecond) // registry_check_interval
	require.NotContains(t, rmps(b), target, "the other server enforces the revocation on its next query")
	require.NotContains(t, rmps(a), target)
	require.NotEmpty(t, rmps(b), "the other consents still hold")

	for _, name := range []string{"a", "b"} {
		path := filepath.Join(shared, "audit", name+".log")
		_, err := audit.Verify(path)
		require.NoError(t, err, "%s's chain", name)
	}
}
