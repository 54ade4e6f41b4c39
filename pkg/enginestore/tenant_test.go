package enginestore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/enginestore"
)

// fakeEngine answers the requests a Store makes with empty, valid bodies
// and records the path and tenant header of each.
type fakeEngine struct {
	header string
	mu     sync.Mutex
	seen   map[string]string // path → tenant header value
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen[r.URL.Path] = r.Header.Get(f.header)
	f.mu.Unlock()
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/api/v1/write"), strings.HasSuffix(p, "/api/v1/push"), strings.HasSuffix(p, "/api/v1/receive"):
		w.WriteHeader(http.StatusNoContent)
	case strings.HasSuffix(p, "/api/v1/read"):
		b, _ := proto.Marshal(&prompb.ReadResponse{Results: []*prompb.QueryResult{{}}})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Header().Set("Content-Encoding", "snappy")
		_, _ = w.Write(snappy.Encode(nil, b))
	case strings.HasSuffix(p, "/api/v1/export"):
		// no series
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[]}}`))
	}
}

func (f *fakeEngine) tenantOf(path string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.seen[path]
	return v, ok
}

// Every request of a Store, write and read, carries the tenant the way its
// engine expects it: a header for Mimir and Thanos, the URL path for a
// VictoriaMetrics cluster (vminsert /insert/<tenant>/, vmselect
// /select/<tenant>/).
func TestTenants(t *testing.T) {
	for _, tc := range []struct {
		kind            enginestore.Kind
		tenant          string
		header          string
		write, readBase string
		wantPaths       []string
	}{
		{kind: enginestore.Mimir, tenant: "lyon-confluence", header: "X-Scope-OrgID",
			write: "/api/v1/push", readBase: "/prometheus", wantPaths: []string{"/api/v1/push", "/prometheus/api/v1/read"}},
		{kind: enginestore.Thanos, tenant: "lyon-confluence", header: "THANOS-TENANT",
			write: "/api/v1/receive", readBase: "", wantPaths: []string{"/api/v1/receive", "/api/v1/query"}},
		{kind: enginestore.VictoriaMetrics, header: "X-Scope-OrgID",
			write: "/insert/7/prometheus/api/v1/write", readBase: "/select/7/prometheus",
			wantPaths: []string{"/insert/7/prometheus/api/v1/write", "/select/7/prometheus/api/v1/export"}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			f := &fakeEngine{header: tc.header, seen: map[string]string{}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			s, err := enginestore.Open(enginestore.Options{
				Kind: tc.kind, Tenant: tc.tenant, WriteURL: srv.URL + tc.write, ReadURL: srv.URL + tc.readBase,
				QueueDir: t.TempDir(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			}, nil, prometheus.NewRegistry())
			require.NoError(t, err)
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			app := s.AppenderV2(ctx)
			now := time.Now().UnixMilli()
			_, err = app.Append(0, labels.FromStrings("__name__", "linky_index_wh", "rmp", "00000000000001"), 0, now, 1, nil, nil, storage.AOptions{})
			require.NoError(t, err)
			require.NoError(t, app.Commit())
			require.NoError(t, s.Queue().Drained(ctx))

			q, err := s.Querier(now-3600_000, now)
			require.NoError(t, err)
			set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "linky_index_wh"))
			for set.Next() {
			}
			require.NoError(t, set.Err())
			require.NoError(t, q.Close())

			for _, p := range tc.wantPaths {
				got, ok := f.tenantOf(p)
				require.True(t, ok, "no request to %s (saw %v)", p, f.seen)
				assert.Equal(t, tc.tenant, got, "tenant header on %s", p)
			}
		})
	}
}
