package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

const prm = "01234567890123"

func index(rmp string) labels.Labels {
	return labels.FromStrings("__name__", "linky_index_wh", "rmp", rmp, "cluster", "k01", "concentrator", "c01", "usage", "residential")
}

func samples(start time.Time, step time.Duration, values ...float64) []prompb.Sample {
	out := make([]prompb.Sample, len(values))
	for i, v := range values {
		out[i] = prompb.Sample{Timestamp: start.Add(time.Duration(i) * step).UnixMilli(), Value: v}
	}
	return out
}

func instantValue(t *testing.T, base, q string, ts time.Time) (string, int) {
	t.Helper()
	code, r := st.Query(t, base, st.OperatorToken, q, ts)
	require.Equal(t, http.StatusOK, code, r.Error)
	if len(r.Data.Result) == 0 {
		return "", 0
	}
	return r.Data.Result[0].Value[1].(string), len(r.Data.Result)
}

func TestWriteStatusCodes(t *testing.T) {
	srv := st.Start(t, st.Options{Edit: func(c *config.Config) { c.Write.MaxBodyBytes = 1 << 20 }})
	now := time.Now().Truncate(time.Minute)
	good := st.Series{Labels: index(prm), Samples: samples(now.Add(-2*time.Minute), time.Minute, 1000, 1001)}
	unknown := st.Series{Labels: labels.FromStrings("__name__", "node_cpu_seconds_total", "cpu", "0"), Samples: samples(now, time.Minute, 1)}
	extraLabel := st.Series{Labels: labels.FromStrings("__name__", "linky_index_wh", "rmp", "01234567890124", "job", "x"), Samples: samples(now, time.Minute, 1)}
	badRMP := st.Series{Labels: labels.FromStrings("__name__", "linky_index_wh", "rmp", "123"), Samples: samples(now, time.Minute, 1)}

	for _, tc := range []struct {
		name        string
		token       string
		contentType string
		body        []byte
		want        int
		wantBody    []string
	}{
		{"v1 stored", st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, []st.Series{good}), http.StatusNoContent, nil},
		{"v2 stored", st.SenderToken, st.ContentTypeV2, st.EncodeV2(t, []st.Series{{Labels: index("01234567890125"), Samples: good.Samples}}), http.StatusNoContent, nil},
		{"no token", "", st.ContentTypeV1, st.EncodeV1(t, []st.Series{good}), http.StatusUnauthorized, nil},
		{"wrong token", "not-a-token-at-all-0000", st.ContentTypeV1, st.EncodeV1(t, []st.Series{good}), http.StatusUnauthorized, nil},
		{"reader token cannot write", st.OperatorToken, st.ContentTypeV1, st.EncodeV1(t, []st.Series{good}), http.StatusUnauthorized, nil},
		{"unknown metric named, v1", st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, []st.Series{unknown}), http.StatusBadRequest, []string{"node_cpu_seconds_total", "not in the catalogue"}},
		{"unknown metric named, v2", st.SenderToken, st.ContentTypeV2, st.EncodeV2(t, []st.Series{unknown}), http.StatusBadRequest, []string{"node_cpu_seconds_total"}},
		{"label not allowed", st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, []st.Series{extraLabel}), http.StatusBadRequest, []string{`label "job" is not allowed`}},
		{"rmp not 14 digits", st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, []st.Series{badRMP}), http.StatusBadRequest, []string{`rmp="123"`}},
		{"load curve without consent", st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, []st.Series{{Labels: labels.FromStrings("__name__", "linky_load_curve_watts", "rmp", prm), Samples: samples(now, time.Minute, 1)}}), http.StatusBadRequest, []string{"without a consent"}},
		{"not snappy", st.SenderToken, st.ContentTypeV1, []byte("hello, not snappy"), http.StatusBadRequest, nil},
		{"not protobuf", st.SenderToken, "application/json", st.EncodeV1(t, []st.Series{good}), http.StatusUnsupportedMediaType, nil},
		{"too large", st.SenderToken, st.ContentTypeV1, make([]byte, 2<<20), http.StatusRequestEntityTooLarge, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := st.Post(t, srv.URL, tc.token, tc.contentType, tc.body)
			require.Equal(t, tc.want, code, body)
			for _, w := range tc.wantBody {
				require.Contains(t, body, w)
			}
		})
	}
	v, _ := instantValue(t, srv.URL, `linky_index_wh{rmp="`+prm+`"}`, now)
	require.Equal(t, "1001", v)
	v, _ = instantValue(t, srv.URL, `linky_index_wh{rmp="01234567890125"}`, now)
	require.Equal(t, "1001", v, "remote-write 2.0 samples are stored")
	_, n := instantValue(t, srv.URL, `{__name__=~".+"}`, now)
	require.Equal(t, 2, n, "nothing refused was stored")

	resp, err := http.Get(srv.URL + "/api/v1/write")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// Valid series of a request are stored even when others in it are refused.
func TestWritePartialRefusalKeepsValidSeries(t *testing.T) {
	srv := st.Start(t, st.Options{})
	now := time.Now().Truncate(time.Minute)
	for _, encode := range []struct {
		name string
		ct   string
		enc  func(testing.TB, []st.Series) []byte
		rmp  string
	}{{"v1", st.ContentTypeV1, st.EncodeV1, "11111111111111"}, {"v2", st.ContentTypeV2, st.EncodeV2, "22222222222222"}} {
		body := encode.enc(t, []st.Series{
			{Labels: labels.FromStrings("__name__", "up"), Samples: samples(now, time.Minute, 1)},
			{Labels: index(encode.rmp), Samples: samples(now.Add(-10*time.Minute), time.Minute, 5, 6, 7)},
			{Labels: labels.FromStrings("__name__", "linky_index_wh"), Samples: samples(now, time.Minute, 1)},
		})
		code, msg := st.Post(t, srv.URL, st.SenderToken, encode.ct, body)
		require.Equal(t, http.StatusBadRequest, code, encode.name)
		require.Contains(t, msg, `metric "up" is not in the catalogue`)
		require.Contains(t, msg, "needs the labels rmp")
		require.Contains(t, msg, "2 series refused")
		v, _ := instantValue(t, srv.URL, `count_over_time(linky_index_wh{rmp="`+encode.rmp+`"}[1h])`, now)
		require.Equal(t, "3", v, encode.name)
	}
	code, r := st.Get(t, srv.URL, st.ScrapeToken, "/metrics", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, r.Error, `metergate_samples_refused_total{reason="not_in_catalogue"} 4`)
	require.Contains(t, r.Error, `metergate_samples_ingested_total 6`)
	require.Contains(t, r.Error, `metergate_write_requests_total{code="400"} 2`)
}

// Linky data arrives at D+1; retries may bring it at D+2. Both are stored.
// Data older than the out-of-order window is refused with a clear message.
func TestLateData(t *testing.T) {
	srv := st.Start(t, st.Options{})
	now := time.Now().Truncate(time.Minute)
	// Concentrator readings keep the head's newest time at "now".
	code, body := st.WriteV1(t, srv.URL, st.SenderToken, st.Series{
		Labels:  labels.FromStrings("__name__", "linky_concentrator_meters_installed", "concentrator", "c01"),
		Samples: samples(now, time.Minute, 126)})
	require.Equal(t, http.StatusNoContent, code, body)

	for _, tc := range []struct {
		name string
		age  time.Duration
		want int
	}{
		{"D+1", 30 * time.Hour, http.StatusNoContent},
		{"D+2", 54 * time.Hour, http.StatusNoContent},
		{"six days late", 6 * 24 * time.Hour, http.StatusNoContent},
		{"older than the 7-day window", 8 * 24 * time.Hour, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rmp := "3333333333333" + string(rune('0'+int(tc.age/(24*time.Hour))))
			code, body := st.WriteV1(t, srv.URL, st.SenderToken, st.Series{Labels: index(rmp), Samples: samples(now.Add(-tc.age), time.Hour, 10, 20)})
			require.Equal(t, tc.want, code, body)
			v, _ := instantValue(t, srv.URL, `count_over_time(linky_index_wh{rmp="`+rmp+`"}[10d])`, now)
			if tc.want == http.StatusNoContent {
				require.Equal(t, "2", v)
			} else {
				require.Contains(t, body, "older than the out-of-order window")
				require.Contains(t, body, rmp)
				require.Equal(t, "", v)
			}
		})
	}
}

func TestRawSelectorsNeedOperator(t *testing.T) {
	srv := st.Start(t, st.Options{})
	now := time.Now()
	code, body := st.WriteV1(t, srv.URL, st.SenderToken, st.Series{Labels: index(prm), Samples: samples(now.Add(-time.Minute), time.Minute, 42)})
	require.Equal(t, http.StatusNoContent, code, body)
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"", http.StatusUnauthorized},
		{"wrong-token-00000000000", http.StatusUnauthorized},
		{st.SenderToken, http.StatusUnauthorized},
		{st.PublicToken, http.StatusForbidden},
		{st.RestrictedToken, http.StatusForbidden},
		{st.OperatorToken, http.StatusOK},
	} {
		code, r := st.Query(t, srv.URL, tc.token, "linky_index_wh", now)
		require.Equal(t, tc.want, code, "token %q: %s", tc.token, r.Error)
		if tc.want == http.StatusForbidden {
			require.Equal(t, "query refused by the privacy policy", r.Error)
			require.Empty(t, r.Data.Result)
		}
	}
	code, r := st.QueryRange(t, srv.URL, st.OperatorToken, "linky_index_wh", now.Add(-time.Hour), now, time.Minute)
	require.Equal(t, http.StatusOK, code, r.Error)
	require.Equal(t, "matrix", r.Data.ResultType)
	code, r = st.Query(t, srv.URL, st.OperatorToken, "sum(", now)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "bad_data", r.ErrorType)
}

func TestHealthAndMetrics(t *testing.T) {
	srv := st.Start(t, st.Options{})
	for _, path := range []string{"/-/healthy", "/-/ready", "/metrics"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+st.OperatorToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		if path == "/metrics" {
			for _, m := range []string{"metergate_tsdb_head_series", "metergate_samples_ingested_total", "metergate_samples_refused_total", "prometheus_tsdb_head_series"} {
				require.True(t, strings.Contains(string(b), m), "/metrics lacks %s", m)
			}
		}
	}
}

// failingStore is a store whose commits fail, as on a full disk.
type failingStore struct{ store.Store }

func (f failingStore) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return failingAppender{f.Store.AppenderV2(ctx).(storage.ExemplarAppenderV2)}
}

type failingAppender struct{ storage.ExemplarAppenderV2 }

func (f failingAppender) Commit() error {
	_ = f.ExemplarAppenderV2.Rollback()
	return errors.New("write /data/wal/00000001: no space left on device")
}

func TestStorageFailureIsRetryable(t *testing.T) {
	dir := t.TempDir()
	db, err := store.OpenEmbedded(dir+"/data", store.Options{Retention: 24 * time.Hour, OutOfOrderWindow: time.Hour}, nil, nil)
	require.NoError(t, err)
	srv := st.Start(t, st.Options{Server: server.Options{Store: failingStore{db}}})
	now := time.Now()
	for _, ct := range []string{st.ContentTypeV1, st.ContentTypeV2} {
		enc := st.EncodeV1
		if ct == st.ContentTypeV2 {
			enc = st.EncodeV2
		}
		code, body := st.Post(t, srv.URL, st.SenderToken, ct, enc(t, []st.Series{{Labels: index(prm), Samples: samples(now, time.Minute, 1)}}))
		require.Equal(t, http.StatusInternalServerError, code, body)
		require.Contains(t, body, "no space left on device")
	}
	v, _ := instantValue(t, srv.URL, "linky_index_wh", now)
	require.Equal(t, "", v)
}

func TestRulesAreEvaluated(t *testing.T) {
	dir := t.TempDir()
	rules := `groups:
- name: test
  interval: 1s
  rules:
  - record: district:linky_concentrator_meters_installed:sum
    expr: sum(linky_concentrator_meters_installed)
`
	require.NoError(t, writeFile(dir+"/rules.yml", rules))
	srv := st.Start(t, st.Options{Dir: dir, Edit: func(c *config.Config) { c.RuleFiles = []string{"rules.yml"} }})
	now := time.Now()
	for _, c := range []string{"c01", "c02"} {
		code, body := st.WriteV1(t, srv.URL, st.SenderToken, st.Series{Labels: labels.FromStrings("__name__", "linky_concentrator_meters_installed", "concentrator", c), Samples: samples(now.Add(-time.Second), time.Second, 100)})
		require.Equal(t, http.StatusNoContent, code, body)
	}
	require.Eventually(t, func() bool {
		v, _ := instantValue(t, srv.URL, "district:linky_concentrator_meters_installed:sum", time.Now())
		return v == "200"
	}, 10*time.Second, 100*time.Millisecond)
	code, r := st.Get(t, srv.URL, st.ScrapeToken, "/metrics", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, r.Error, `prometheus_rule_evaluation_failures_total{rule_group=`)
}

func TestUnknownPathIs404(t *testing.T) {
	srv := st.Start(t, st.Options{Registry: &registry.Registry{}})
	resp, err := http.Get(srv.URL + "/graph")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.False(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"))
}

// /metrics carries the gate's counters by audience and rule: query
// statistics about other callers. Operators and scrape-only callers read it.
func TestMetricsNeedScrapeOrOperator(t *testing.T) {
	scrapeToken := st.ScrapeToken
	srv := st.Start(t, st.Options{Edit: func(c *config.Config) { c.Anonymous = registry.Public }})
	for _, tc := range []struct {
		token string
		want  int
	}{
		{"", http.StatusUnauthorized},
		{"wrong-token-00000000000", http.StatusUnauthorized},
		{st.SenderToken, http.StatusUnauthorized},
		{st.PublicToken, http.StatusForbidden},
		{st.RestrictedToken, http.StatusForbidden},
		{st.ConsentedToken, http.StatusForbidden},
		{st.OperatorToken, http.StatusOK},
		{scrapeToken, http.StatusOK},
	} {
		code, r := st.Get(t, srv.URL, tc.token, "/metrics", nil)
		require.Equal(t, tc.want, code, "token %q", tc.token)
		if code == http.StatusOK {
			require.Contains(t, r.Error, "metergate_samples_ingested_total")
		}
	}
	// A scrape-only caller reads no data.
	code, _ := st.Query(t, srv.URL, scrapeToken, `sum(linky_consumption_daily_wh{perimeter="confluence"})`, time.Now())
	require.Equal(t, http.StatusUnauthorized, code)
}
