package sender

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// receiver is a fake remote-write endpoint that answers with a scripted
// sequence of status codes (the last one repeats) and records what it
// accepted.
type receiver struct {
	t        *testing.T
	statuses []int
	calls    atomic.Int64
	mu       sync.Mutex
	accepted map[string][]prompb.Sample // by series (labels string)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(rc.calls.Add(1)) - 1
	require.Equal(rc.t, "snappy", r.Header.Get("Content-Encoding"))
	require.Equal(rc.t, "application/x-protobuf", r.Header.Get("Content-Type"))
	require.Equal(rc.t, "0.1.0", r.Header.Get("X-Prometheus-Remote-Write-Version"))
	require.Equal(rc.t, "Bearer secret", r.Header.Get("Authorization"))
	comp, err := io.ReadAll(r.Body)
	require.NoError(rc.t, err)
	raw, err := snappy.Decode(nil, comp)
	require.NoError(rc.t, err)
	var wr prompb.WriteRequest
	require.NoError(rc.t, wr.Unmarshal(raw))
	status := rc.statuses[min(n, len(rc.statuses)-1)]
	if status/100 == 2 {
		rc.mu.Lock()
		for _, ts := range wr.Timeseries {
			k := fmt.Sprint(ts.Labels)
			rc.accepted[k] = append(rc.accepted[k], ts.Samples...)
		}
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "status %d", status)
}

func series(name string, n int) prompb.TimeSeries {
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "rmp", Value: name}}}
	for i := range n {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: int64(i) * 1000, Value: float64(i)})
	}
	return ts
}

func TestSender(t *testing.T) {
	cases := []struct {
		name                   string
		statuses               []int
		maxRetries             int
		wantSent, wantDropped  int64
		wantRetries            int64
		wantRequests, wantCall int64
	}{
		{name: "accepted", statuses: []int{204}, wantSent: 30, wantRequests: 1},
		{name: "500 then 204 is retried", statuses: []int{500, 204}, wantSent: 30, wantRetries: 1, wantRequests: 2},
		{name: "503 twice then 200", statuses: []int{503, 503, 200}, wantSent: 30, wantRetries: 2, wantRequests: 3},
		{name: "429 is retried", statuses: []int{429, 204}, wantSent: 30, wantRetries: 1, wantRequests: 2},
		{name: "400 is dropped, not retried", statuses: []int{400}, wantDropped: 30, wantRequests: 1},
		{name: "401 is dropped, not retried", statuses: []int{401}, wantDropped: 30, wantRequests: 1},
		{name: "413 is dropped, not retried", statuses: []int{413}, wantDropped: 30, wantRequests: 1},
		{name: "retries exhausted", statuses: []int{500}, maxRetries: 3, wantDropped: 30, wantRetries: 3, wantRequests: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{t: t, statuses: tc.statuses, accepted: map[string][]prompb.Sample{}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			s, err := New(Config{URL: srv.URL, Token: "secret", Shards: 1, MaxSamplesPerRequest: 100,
				MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxRetries: tc.maxRetries})
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, s.Write(ctx, []prompb.TimeSeries{series("a", 10), series("b", 20)}))
			require.NoError(t, s.Close(ctx))
			st := s.Stats()
			require.Equal(t, tc.wantSent, st.SamplesSent, "sent")
			require.Equal(t, tc.wantDropped, st.SamplesDropped, "dropped")
			require.Equal(t, tc.wantRetries, st.Retries, "retries")
			require.Equal(t, tc.wantRequests, st.Requests, "requests")
			require.Equal(t, tc.wantRequests, rc.calls.Load(), "requests the server saw")
		})
	}
}

func TestSenderNetworkErrorIsRetried(t *testing.T) {
	rc := &receiver{t: t, statuses: []int{204}, accepted: map[string][]prompb.Sample{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var fails atomic.Int64
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if fails.Add(1) <= 2 {
			return nil, fmt.Errorf("connection refused (simulated)")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	s, err := New(Config{URL: srv.URL, Token: "secret", Shards: 2, Client: client, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Write(context.Background(), []prompb.TimeSeries{series("a", 5)}))
	require.NoError(t, s.Close(context.Background()))
	require.Equal(t, Stats{SamplesSent: 5, Requests: 3, Retries: 2}, s.Stats())
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Many series split over several shards and requests (some series longer
// than a request) must all arrive, each in time order, with no request
// larger than the limit.
func TestSenderBatchingKeepsOrder(t *testing.T) {
	var maxSeen atomic.Int64
	rc := &receiver{t: t, statuses: []int{204}, accepted: map[string][]prompb.Sample{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		comp, _ := io.ReadAll(r.Body)
		raw, _ := snappy.Decode(nil, comp)
		var wr prompb.WriteRequest
		require.NoError(t, wr.Unmarshal(raw))
		n := 0
		for _, ts := range wr.Timeseries {
			n += len(ts.Samples)
		}
		for {
			old := maxSeen.Load()
			if int64(n) <= old || maxSeen.CompareAndSwap(old, int64(n)) {
				break
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(comp))
		rc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL, Token: "secret", Shards: 3, MaxSamplesPerRequest: 70})
	require.NoError(t, err)
	ctx := context.Background()
	total := 0
	// Two writes per series, as two delivered days: order must hold across writes.
	for day := range 2 {
		var batch []prompb.TimeSeries
		for i := range 40 {
			ts := series(fmt.Sprintf("%02d", i), 1+i*3)
			for j := range ts.Samples {
				ts.Samples[j].Timestamp += int64(day) * 1e6
			}
			total += len(ts.Samples)
			batch = append(batch, ts)
		}
		require.NoError(t, s.Write(ctx, batch))
	}
	require.NoError(t, s.Close(ctx))
	require.Equal(t, int64(total), s.Stats().SamplesSent)
	require.LessOrEqual(t, maxSeen.Load(), int64(70))
	require.Len(t, rc.accepted, 40)
	got := 0
	for k, samples := range rc.accepted {
		for j := 1; j < len(samples); j++ {
			require.Less(t, samples[j-1].Timestamp, samples[j].Timestamp, "series %s out of order", k)
		}
		got += len(samples)
	}
	require.Equal(t, total, got)
}

// A partial batch must not wait for more data longer than the deadline.
func TestSenderBatchDeadline(t *testing.T) {
	rc := &receiver{t: t, statuses: []int{204}, accepted: map[string][]prompb.Sample{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, err := New(Config{URL: srv.URL, Token: "secret", BatchDeadline: 20 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close(context.Background())
	require.NoError(t, s.Write(context.Background(), []prompb.TimeSeries{series("a", 3)}))
	require.Eventually(t, func() bool { return s.Stats().SamplesSent == 3 }, 2*time.Second, 5*time.Millisecond)
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	s := &Sender{cfg: Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}}
	for attempt, want := range []time.Duration{10, 20, 40, 80, 160, 200, 200} {
		want *= time.Millisecond
		for range 50 {
			d := s.backoff(attempt)
			require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
			require.LessOrEqual(t, d, want, "attempt %d", attempt)
		}
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	rc := &receiver{t: t, statuses: []int{503}, accepted: map[string][]prompb.Sample{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, err := New(Config{URL: srv.URL, Token: "secret", MaxRetries: -1, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, s.Write(context.Background(), []prompb.TimeSeries{series("a", 3)}))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, s.Close(ctx), context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
	require.Zero(t, s.Stats().SamplesSent)
}
