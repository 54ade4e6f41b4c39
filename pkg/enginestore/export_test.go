package enginestore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/enginestore"
)

// VictoriaMetrics' export writes a staleness marker as null. It must come
// back as a staleness marker (which readers skip), not as 0: a 0 index
// reading after a real one reads as a meter replaced and hides the day.
func TestExportKeepsStalenessMarkers(t *testing.T) {
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/export" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, `{"metric":{"__name__":"linky_index_wh","rmp":"21000000000001"},"values":[1120000,1121200,null],"timestamps":[1000,2000,3000]}`)
	}))
	defer engine.Close()
	s, err := enginestore.Open(enginestore.Options{Kind: enginestore.VictoriaMetrics, WriteURL: engine.URL + "/api/v1/write", ReadURL: engine.URL, QueueDir: t.TempDir()}, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	defer s.Close()
	q, err := s.Querier(0, 10_000)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "linky_index_wh"))
	require.True(t, set.Next())
	it := set.At().Iterator(nil)
	var got []float64
	for it.Next() == chunkenc.ValFloat {
		_, v := it.At()
		got = append(got, v)
	}
	require.NoError(t, set.Err())
	require.Len(t, got, 3)
	require.Equal(t, []float64{1120000, 1121200}, got[:2])
	require.True(t, value.IsStaleNaN(got[2]), "null is a staleness marker, got %v", got[2])
}
