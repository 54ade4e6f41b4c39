package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// sample is one stored point of one series, keyed for exact comparison.
type sample struct {
	series string
	t      int64
	v      string
}

func readBack(t *testing.T, url, token, selector string, at time.Time, window string) []sample {
	t.Helper()
	code, r := st.Query(t, url, token, selector+"["+window+"]", at)
	require.Equal(t, http.StatusOK, code, r.Error)
	var out []sample
	for _, s := range r.Data.Result {
		delete(s.Metric, "job")
		delete(s.Metric, "instance")
		keys := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		for _, v := range s.Values {
			out = append(out, sample{strings.Join(keys, ","), int64(math.Round(v[0].(float64) * 1000)), v[1].(string)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].series != out[j].series {
			return out[i].series < out[j].series
		}
		return out[i].t < out[j].t
	})
	return out
}

// vmagent, a remote-write sender we did not write, forwards a D+1 delivery
// (yesterday's index readings and load curves of consenting meters) to
// metergate; every sample is read back exactly.
func TestVmagentDeliversDPlus1Exactly(t *testing.T) {
	vmagent := needBinary(t, "vmagent")
	const meters = 40
	yesterday := localday.Of(time.Now()).AddDays(-1)
	reg := &registry.Registry{}
	for m := range meters {
		prm := fmt.Sprintf("%014d", 5000000000+m)
		reg.Meters = append(reg.Meters, registry.Meter{PRM: prm, Concentrator: "c01", Cluster: "k01", Usage: "residential"})
		if m%4 == 0 { // a quarter of the households consented to their load curve
			reg.Consents = append(reg.Consents, registry.Consent{PRM: prm, UseCase: registry.UC3, Granted: yesterday.AddDays(-30).Start()})
		}
	}
	dir := t.TempDir()
	writeServerDir(t, dir, reg)
	p := startProcess(t, dir)

	vmAddr := freePort(t)
	vm := exec.Command(vmagent, "-httpListenAddr="+vmAddr, "-remoteWrite.url="+p.URL+"/api/v1/write",
		"-remoteWrite.bearerToken="+st.SenderToken, "-remoteWrite.tmpDataPath="+filepath.Join(dir, "vmagent"),
		"-remoteWrite.flushInterval=100ms", "-loggerLevel=ERROR")
	vm.Stdout, vm.Stderr = os.Stderr, os.Stderr
	require.NoError(t, vm.Start())
	t.Cleanup(func() { _ = vm.Process.Kill(); _ = vm.Wait() })
	st.WaitOK(t, "http://"+vmAddr+"/health")

	// The exposition format with explicit timestamps: what the head-end
	// delivers for yesterday, sent to vmagent's import API.
	var body strings.Builder
	want := 0
	for m := range meters {
		prm := fmt.Sprintf("%014d", 5000000000+m)
		lbl := fmt.Sprintf(`rmp="%s",concentrator="c01",cluster="k01",usage="residential"`, prm)
		fmt.Fprintf(&body, "linky_index_wh{%s} %d %d\n", lbl, 10_000_000+m*1000, yesterday.Start().UnixMilli())
		fmt.Fprintf(&body, "linky_index_wh{%s} %d %d\n", lbl, 10_000_000+m*1000+7_345+m, yesterday.End().UnixMilli())
		want += 2
		if m%4 == 0 {
			for ts := yesterday.Start().Add(30 * time.Minute); !ts.After(yesterday.End()); ts = ts.Add(30 * time.Minute) {
				fmt.Fprintf(&body, "linky_load_curve_watts{%s} %d %d\n", lbl, 300+(ts.Hour()*37+m)%900, ts.UnixMilli())
				want++
			}
		}
	}
	resp, err := http.Post("http://"+vmAddr+"/api/v1/import/prometheus", "text/plain", strings.NewReader(body.String()))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(b))

	at := yesterday.End().Add(time.Minute)
	var got []sample
	require.Eventually(t, func() bool {
		got = append(readBack(t, p.URL, st.OperatorToken, "linky_index_wh", at, "2d"), readBack(t, p.URL, st.OperatorToken, "linky_load_curve_watts", at, "2d")...)
		return len(got) >= want
	}, 30*time.Second, 200*time.Millisecond, "metergate has %d of %d samples", len(got), want)
	require.Len(t, got, want)

	// Every line sent is read back with its exact timestamp and value.
	sent := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(body.String()), "\n") {
		sent[line] = true
	}
	for _, s := range got {
		name := "linky_index_wh"
		if len(s.series) > 0 && !strings.Contains(s.series, "__name__=linky_index_wh") {
			name = "linky_load_curve_watts"
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(s.series, ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = v
		}
		line := fmt.Sprintf(`%s{rmp="%s",concentrator="c01",cluster="k01",usage="residential"} %s %d`, name, labels["rmp"], s.v, s.t)
		require.True(t, sent[line], "read back a sample that was not sent: %s", line)
		delete(sent, line)
	}
	require.Empty(t, sent)
	p.terminate(t)
}

// Prometheus 2.42 scrapes a head-end's exposition and remote-writes it to
// metergate; what metergate stores is exactly what Prometheus stored.
func TestPrometheusRemoteWritesExactly(t *testing.T) {
	prometheus := needBinary(t, "prometheus")
	dir := t.TempDir()
	writeServerDir(t, dir, &registry.Registry{})
	p := startProcess(t, dir)

	// The head-end exposes each meter's index with the reading's own
	// timestamp; every scrape brings a new reading. (Prometheus forwards
	// only samples stamped after its remote-write queue started.)
	var mu sync.Mutex
	scrape := 0
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		scrape++
		n := scrape
		mu.Unlock()
		ts := time.Now().Add(-time.Second).UnixMilli()
		for m := range 25 {
			fmt.Fprintf(w, "linky_index_wh{rmp=\"%014d\",concentrator=\"c07\"} %d %d\n", 7000000000+m, 1_000_000+n*100+m, ts)
		}
		fmt.Fprintf(w, "linky_concentrator_meters_installed{concentrator=\"c07\"} 25\n")
	}))
	t.Cleanup(exporter.Close)

	promAddr := freePort(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
- job_name: headend
  honor_labels: true
  static_configs: [{targets: [%q]}]
remote_write:
- url: %s/api/v1/write
  authorization: {credentials: %s}
  queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms}
  write_relabel_configs:
  - {source_labels: [__name__], regex: "linky_.*", action: keep}
  - {regex: "job|instance", action: labeldrop}
`, strings.TrimPrefix(exporter.URL, "http://"), p.URL, st.SenderToken)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644))
	prom := exec.Command(prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = os.Stderr, os.Stderr
	require.NoError(t, prom.Start())
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })
	st.WaitOK(t, "http://"+promAddr+"/-/ready")

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return scrape >= 6 }, 30*time.Second, 100*time.Millisecond)
	at := time.Now()
	var theirs, ours []sample
	require.Eventually(t, func() bool {
		theirs = readBack(t, "http://"+promAddr, "", "linky_index_wh", at, "1h")
		ours = readBack(t, p.URL, st.OperatorToken, "linky_index_wh", at, "1h")
		return len(theirs) >= 25*5 && len(ours) == len(theirs)
	}, 30*time.Second, 200*time.Millisecond)
	t.Logf("Prometheus and metergate each stored %d samples", len(ours))
	require.Equal(t, theirs, ours)
	p.terminate(t)
}
