package ingest

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
)

func TestValidCache(t *testing.T) {
	c := newValidCache()
	good := labels.FromStrings("__name__", catalogue.IndexConsumption, "rmp", "01234567890123")
	for range 2 { // the second answer comes from the cache
		v, err := c.validate(good)
		require.NoError(t, err)
		require.Equal(t, catalogue.IndexConsumption, v.metric.Name)
	}
	require.Len(t, c.series, 1)

	bad := labels.FromStrings("__name__", catalogue.IndexConsumption, "rmp", "0123")
	for range 2 { // refused every time, never remembered
		_, err := c.validate(bad)
		require.Error(t, err)
	}
	require.Len(t, c.series, 1)

	// A label set whose hash collides with a cached one is still validated:
	// plant the bad series under the good one's hash.
	c.series[bad.Hash()] = &validSeries{labels: good, hash: bad.Hash(), metric: c.series[good.Hash()].metric}
	_, err := c.validate(bad)
	require.Error(t, err, "a hash match with other labels must not skip validation")
}
