package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
)

func TestConcurrentQueriesBounded(t *testing.T) {
	cfg := config.Defaults()
	cfg.Query.MaxConcurrent = 2
	l := newLimits(&cfg, prometheus.NewRegistry())
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	h := l.boundQueries(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))
	done := make(chan int, 2)
	for range 2 {
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query", nil))
			done <- rec.Code
		}()
	}
	<-started
	<-started
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), "query.max_concurrent = 2")
	require.Equal(t, 1.0, testutil.ToFloat64(l.hits.WithLabelValues(LimitConcurrentQueries)))
	close(release)
	require.Equal(t, http.StatusOK, <-done)
	require.Equal(t, http.StatusOK, <-done)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query", nil))
	require.Equal(t, http.StatusOK, rec.Code, "the slots are given back")
}

func TestRateLimiterRefills(t *testing.T) {
	now := time.Unix(0, 0)
	r := newRateLimiter(2, 3, func() time.Time { return now })
	for i := range 3 {
		ok, _ := r.allow("a")
		require.True(t, ok, "burst %d", i)
	}
	ok, wait := r.allow("a")
	require.False(t, ok)
	require.Equal(t, 500*time.Millisecond, wait)
	ok, _ = r.allow("b")
	require.True(t, ok, "buckets are per caller")
	now = now.Add(500 * time.Millisecond)
	ok, _ = r.allow("a")
	require.True(t, ok, "refilled at 2 a second")
	now = now.Add(time.Hour)
	for range 3 {
		ok, _ = r.allow("a")
		require.True(t, ok)
	}
	ok, _ = r.allow("a")
	require.False(t, ok, "a bucket holds at most the burst")
}
