package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

func metrics(t *testing.T, base string) string {
	t.Helper()
	code, r := st.Get(t, base, st.ScrapeToken, "/metrics", nil)
	require.Equal(t, http.StatusOK, code)
	return r.Error
}

func manySeries(n int, first int, ts time.Time) []st.Series {
	out := make([]st.Series, n)
	for i := range out {
		out[i] = st.Series{Labels: index(fmt.Sprintf("%014d", first+i)), Samples: []prompb.Sample{{Timestamp: ts.UnixMilli(), Value: 1}}}
	}
	return out
}

func TestWriteLimits(t *testing.T) {
	srv := st.Start(t, st.Options{Edit: func(c *config.Config) {
		c.Write.MaxSamplesPerRequest = 50
		c.Write.MaxNewSeriesPerDay = 30
	}})
	now := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		name     string
		series   []st.Series
		want     int
		wantBody string
	}{
		{"samples at the limit", manySeries(25, 0, now), http.StatusNoContent, ""},
		{"samples over the limit", manySeries(51, 100, now), http.StatusRequestEntityTooLarge, "max_samples_per_request"},
		{"new series within the day's quota", manySeries(5, 25, now), http.StatusNoContent, ""},
		{"new series over the day's quota", manySeries(10, 30, now), http.StatusBadRequest, "max_new_series_per_day"},
		{"known series still accepted", manySeries(30, 0, now.Add(time.Second)), http.StatusNoContent, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := st.Post(t, srv.URL, st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, tc.series))
			require.Equal(t, tc.want, code, body)
			require.Contains(t, body, tc.wantBody)
		})
	}
	v, _ := instantValue(t, srv.URL, `count(linky_index_wh)`, now.Add(time.Second))
	require.Equal(t, "30", v, "nothing of the 413 request, nothing beyond the quota is stored")
	m := metrics(t, srv.URL)
	require.Contains(t, m, `metergate_limit_hits_total{limit="write_max_samples_per_request"} 1`)
	require.Contains(t, m, `metergate_limit_hits_total{limit="write_max_new_series_per_day"} 10`)
	require.Contains(t, m, `metergate_samples_refused_total{reason="new_series_limit"} 10`)

	// After a restart the series stored are known: they are not new again.
	require.NoError(t, srv.Stop())
	srv = st.Start(t, st.Options{Dir: srv.Dir, Edit: func(c *config.Config) { c.Write.MaxNewSeriesPerDay = 1 }})
	code, body := st.Post(t, srv.URL, st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, manySeries(30, 0, now.Add(2*time.Second))))
	require.Equal(t, http.StatusNoContent, code, body)
}

func TestRateLimit(t *testing.T) {
	srv := st.Start(t, st.Options{Edit: func(c *config.Config) {
		c.HTTP.RateLimit = 0.5
		c.HTTP.Burst = 3
	}})
	for i := range 3 {
		code, r := st.Query(t, srv.URL, st.OperatorToken, "vector(1)", time.Now())
		require.Equal(t, http.StatusOK, code, "request %d within the burst: %s", i, r.Error)
	}
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/query?query=vector(1)", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+st.OperatorToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 2, retry, 1, "one token every 2 s")

	code, r := st.Query(t, srv.URL, st.PublicToken, "vector(1)", time.Now())
	require.NotEqual(t, http.StatusTooManyRequests, code, "the budget is per token: %s", r.Error)
	require.Contains(t, metrics(t, srv.URL), `metergate_limit_hits_total{limit="http_rate_limit"} 1`)
}

func TestQueryLimits(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name      string
		edit      func(*config.Config)
		want      int
		errorType string
		limit     string
	}{
		{"timeout answers 503", func(c *config.Config) { c.Query.Timeout = model.Duration(time.Nanosecond) }, http.StatusServiceUnavailable, "timeout", "query_timeout"},
		{"max samples answers 422", func(c *config.Config) { c.Query.MaxSamples = 5 }, http.StatusUnprocessableEntity, "execution", "query_max_samples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := st.Start(t, st.Options{Edit: tc.edit})
			code, body := st.WriteV1(t, srv.URL, st.SenderToken, st.Series{Labels: index(prm), Samples: samples(now.Add(-time.Hour), time.Minute, make([]float64, 60)...)})
			require.Equal(t, http.StatusNoContent, code, body)
			code, r := st.QueryRange(t, srv.URL, st.OperatorToken, "linky_index_wh", now.Add(-time.Hour), now, time.Minute)
			require.Equal(t, tc.want, code, r.Error)
			require.Equal(t, tc.errorType, r.ErrorType)
			require.Contains(t, metrics(t, srv.URL), `metergate_limit_hits_total{limit="`+tc.limit+`"} 1`)
		})
	}
}

// A client that sends its headers slower than read_header_timeout is cut.
func TestSlowlorisIsCut(t *testing.T) {
	srv := st.Start(t, st.Options{Edit: func(c *config.Config) {
		c.HTTP.ReadHeaderTimeout = model.Duration(300 * time.Millisecond)
	}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	began := time.Now()
	_, err = conn.Write([]byte("POST /api/v1/write HTTP/1.1\r\nHost: metergate\r\n"))
	require.NoError(t, err)
	// One header line every 100 ms: each byte arrives in time, the whole
	// header never does.
	cut := false
	for i := 0; i < 50 && !cut; i++ {
		time.Sleep(100 * time.Millisecond)
		if _, err := fmt.Fprintf(conn, "X-Slow-%d: 1\r\n", i); err != nil {
			cut = true
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := conn.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			cut = true
		}
	}
	require.True(t, cut, "the slow client was not disconnected")
	require.Less(t, time.Since(began), 3*time.Second)
	require.Eventually(t, func() bool {
		return strings.Contains(metrics(t, srv.URL), "metergate_http_connections_cut_total 1")
	}, 5*time.Second, 50*time.Millisecond)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// rewriteCallers changes the callers of a test server's configuration file.
func rewriteCallers(t *testing.T, dir string, edit func(*config.Config)) {
	t.Helper()
	path := filepath.Join(dir, "metergate.yml")
	c, err := config.Load(path)
	require.NoError(t, err)
	edit(c)
	b, err := yaml.Marshal(c)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

func TestTokensHashedExpiringReloaded(t *testing.T) {
	const hashedToken, expiredToken, newToken = "hashed-reader-0123456789", "expired-reader-0123456789", "new-reader-token-0123456789"
	srv := st.Start(t, st.Options{Edit: func(c *config.Config) {
		c.Callers = append(c.Callers,
			config.Caller{Name: "hashed", TokenSHA256: config.HashToken(hashedToken), Audience: registry.Operator},
			config.Caller{Name: "expired", Token: expiredToken, Audience: registry.Operator, Expires: time.Now().Add(-time.Minute)},
		)
	}})
	query := func(token string) int {
		code, _ := st.Query(t, srv.URL, token, "vector(1)", time.Now())
		return code
	}
	require.Equal(t, http.StatusOK, query(hashedToken))
	require.Equal(t, http.StatusUnauthorized, query(config.HashToken(hashedToken)), "the digest is not a token")
	require.Equal(t, http.StatusUnauthorized, query(expiredToken))
	require.Equal(t, http.StatusUnauthorized, query(newToken))

	// Reload: a new caller, the hashed one removed.
	rewriteCallers(t, srv.Dir, func(c *config.Config) {
		c.Callers = append(c.Callers[:len(c.Callers)-2], config.Caller{Name: "new", TokenSHA256: config.HashToken(newToken), Audience: registry.Public})
	})
	require.NoError(t, srv.Server.Reload())
	require.NotEqual(t, http.StatusUnauthorized, query(newToken))
	require.Equal(t, http.StatusUnauthorized, query(hashedToken))

	// An invalid configuration is refused; the callers in force stay.
	path := filepath.Join(srv.Dir, "metergate.yml")
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(good, []byte("\nbogus_key: 1\n")...), 0o600))
	require.ErrorContains(t, srv.Server.Reload(), "bogus_key")
	require.NotEqual(t, http.StatusUnauthorized, query(newToken))
	require.Equal(t, http.StatusOK, query(st.OperatorToken))
}

// countingStore counts every use of storage.
type countingStore struct {
	store.Store
	uses atomic.Int64
}

func (c *countingStore) AppenderV2(ctx context.Context) storage.AppenderV2 {
	c.uses.Add(1)
	return c.Store.AppenderV2(ctx)
}

func (c *countingStore) Querier(mint, maxt int64) (storage.Querier, error) {
	c.uses.Add(1)
	return c.Store.Querier(mint, maxt)
}

// Without a valid identity, nothing reaches storage or the gate (whose
// every decision is audited).
func TestNoIdentityNeverReachesStorage(t *testing.T) {
	dir := t.TempDir()
	db, err := store.OpenEmbedded(filepath.Join(dir, "tsdb"), store.Options{Retention: 24 * time.Hour, OutOfOrderWindow: time.Hour}, nil, nil)
	require.NoError(t, err)
	cs := &countingStore{Store: db}
	srv := st.Start(t, st.Options{Server: server.Options{Store: cs}, Edit: func(c *config.Config) {
		c.Callers = append(c.Callers, config.Caller{Name: "expired", Token: "expired-reader-0123456789", Audience: registry.Operator, Expires: time.Now().Add(-time.Second)})
	}})
	body := st.EncodeV1(t, manySeries(1, 0, time.Now()))
	for _, token := range []string{"", "wrong-token-0123456789", "expired-reader-0123456789", "Basic " + st.OperatorToken} {
		code, _ := st.Post(t, srv.URL, token, st.ContentTypeV1, body)
		require.Equal(t, http.StatusUnauthorized, code, token)
		code, _ = st.Query(t, srv.URL, token, "linky_index_wh", time.Now())
		require.Equal(t, http.StatusUnauthorized, code, token)
		code, _ = st.QueryRange(t, srv.URL, token, "linky_index_wh", time.Now().Add(-time.Hour), time.Now(), time.Minute)
		require.Equal(t, http.StatusUnauthorized, code, token)
	}
	require.Zero(t, cs.uses.Load(), "an unidentified request reached storage")
	audit, err := os.ReadFile(filepath.Join(srv.Dir, "audit.log"))
	require.NoError(t, err)
	require.Empty(t, audit, "an unidentified request reached the gate")
}

func TestSnapshotAndRestore(t *testing.T) {
	srv := st.Start(t, st.Options{})
	now := time.Now().Truncate(time.Minute)
	code, body := st.WriteV1(t, srv.URL, st.SenderToken, st.Series{Labels: index(prm), Samples: samples(now.Add(-10*time.Minute), time.Minute, 1, 2, 3, 4, 5)})
	require.Equal(t, http.StatusNoContent, code, body)

	snapshot := func(token string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/admin/snapshot", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var r struct {
			Data struct{ Name string } `json:"data"`
		}
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &r)
		return resp.StatusCode, r.Data.Name
	}
	for _, token := range []string{st.PublicToken, st.RestrictedToken, st.SenderToken} {
		code, _ := snapshot(token)
		require.Equal(t, http.StatusForbidden, code, token)
	}
	code, name := snapshot(st.OperatorToken)
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, name)
	// Written after the snapshot: not in it.
	code, body = st.WriteV1(t, srv.URL, st.SenderToken, st.Series{Labels: index(prm), Samples: samples(now.Add(-4*time.Minute), time.Minute, 6)})
	require.Equal(t, http.StatusNoContent, code, body)
	require.NoError(t, srv.Stop())

	// Restore: a new server whose data_dir is the snapshot.
	snapDir := filepath.Join(srv.Dir, "data", "snapshots", name)
	restored := st.Start(t, st.Options{Edit: func(c *config.Config) { c.DataDir = snapDir }})
	v, _ := instantValue(t, restored.URL, `count_over_time(linky_index_wh{rmp="`+prm+`"}[1h])`, now)
	require.Equal(t, "5", v)
}
