package ingest

import (
	"sync"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/catalogue"
)

// maxCachedSeries bounds the validation cache: the district has about 20k
// series; past the bound the cache starts again empty rather than growing.
const maxCachedSeries = 1 << 18

// validCache remembers the catalogue entry of label sets already found
// valid, across requests. Live senders repeat the same series in every
// request, one sample each, and matching label values against the
// catalogue's patterns was a fifth of the CPU of the live shape
// (docs/performance.md). The catalogue never changes while the server runs,
// so a series valid once stays valid. Refused series are not remembered:
// they are rare and each refusal is reported and counted.
type validCache struct {
	mu     sync.RWMutex
	series map[uint64]validSeries
}

type validSeries struct {
	labels labels.Labels // compared in full: a hash collision must not skip validation
	metric *catalogue.Metric
}

func newValidCache() *validCache { return &validCache{series: map[uint64]validSeries{}} }

// validate is catalogue.Validate with memory.
func (c *validCache) validate(ls labels.Labels) (*catalogue.Metric, error) {
	h := ls.Hash()
	c.mu.RLock()
	v, ok := c.series[h]
	c.mu.RUnlock()
	if ok && labels.Equal(v.labels, ls) {
		return v.metric, nil
	}
	m, err := catalogue.Validate(ls)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.series) >= maxCachedSeries {
		clear(c.series)
	}
	// The handler's labels live in a scratch buffer reused for the next
	// series: keep a copy.
	c.series[h] = validSeries{labels: ls.Copy(), metric: m}
	c.mu.Unlock()
	return m, nil
}
