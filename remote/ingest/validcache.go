package ingest

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

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
//
// A remembered label set also passed the write handler's own checks (a
// metric name, valid UTF-8, no repeated label name), which a cache hit
// spares too, and it carries the storage's reference of its series, which
// spares the TSDB its lookup by labels.
type validCache struct {
	mu     sync.RWMutex
	series map[uint64]*validSeries
	// wire finds a series by its label fields as a 1.0 sender encodes them,
	// the same bytes every request (v1wire.go): no labels to build, sort
	// and hash.
	wire map[uint64]wireSeries
}

type wireSeries struct {
	wire   []byte // compared in full, as labels are
	series *validSeries
}

var wireSeed = maphash.MakeSeed()

type validSeries struct {
	labels labels.Labels // a copy owned by the cache, compared in full: a hash collision must not skip validation
	hash   uint64
	metric *catalogue.Metric
	rmp    string // the meter, for the consent of its load curve
	// ref is the storage's reference of the series at its last append, 0
	// before. storage.AppenderV2 lets a caller pass back a reference from an
	// earlier transaction; the TSDB looks the series up by labels when the
	// reference is no longer in its head (series garbage-collected), and
	// never gives a reference to another series, so a stale one costs a
	// lookup, never a sample in the wrong series.
	ref atomic.Uint64
}

func (s *validSeries) seriesRef() storage.SeriesRef { return storage.SeriesRef(s.ref.Load()) }

// appended records the reference the storage returned for the series.
func (s *validSeries) appended(ref storage.SeriesRef) {
	if ref != 0 && s.ref.Load() != uint64(ref) {
		s.ref.Store(uint64(ref))
	}
}

func newValidCache() *validCache {
	return &validCache{series: map[uint64]*validSeries{}, wire: map[uint64]wireSeries{}}
}

// lookupWire returns the entry of the series whose label fields were
// exactly wire when it was found valid, or nil.
func (c *validCache) lookupWire(wire []byte) *validSeries {
	h := maphash.Bytes(wireSeed, wire)
	c.mu.RLock()
	w, ok := c.wire[h]
	c.mu.RUnlock()
	if ok && bytes.Equal(w.wire, wire) {
		return w.series
	}
	return nil
}

// rememberWire records that the label fields wire decode to the valid
// series v.
func (c *validCache) rememberWire(wire []byte, v *validSeries) {
	h := maphash.Bytes(wireSeed, wire)
	c.mu.Lock()
	if len(c.wire) >= maxCachedSeries {
		clear(c.wire)
	}
	c.wire[h] = wireSeries{wire: bytes.Clone(wire), series: v}
	c.mu.Unlock()
}

// lookup returns the entry of ls, or nil if ls was not found valid before.
func (c *validCache) lookup(hash uint64, ls labels.Labels) *validSeries {
	c.mu.RLock()
	v := c.series[hash]
	c.mu.RUnlock()
	if v != nil && labels.Equal(v.labels, ls) {
		return v
	}
	return nil
}

// validate is catalogue.Validate with memory.
func (c *validCache) validate(ls labels.Labels) (*validSeries, error) {
	h := ls.Hash()
	if v := c.lookup(h, ls); v != nil {
		return v, nil
	}
	m, err := catalogue.Validate(ls)
	if err != nil {
		return nil, err
	}
	v := &validSeries{labels: ls, hash: h, metric: m, rmp: ls.Get(catalogue.LabelRMP)}
	if !ls.Has(labels.MetricName) || !ls.IsValid(model.UTF8Validation) {
		return v, nil // valid for the catalogue, but not to be remembered as passing the handler's checks
	}
	if _, dup := ls.HasDuplicateLabelNames(); dup {
		return v, nil
	}
	// The labels may live in a decoder's scratch buffer reused for the next
	// series: keep a copy.
	v.labels = ls.Copy()
	v.rmp = v.labels.Get(catalogue.LabelRMP)
	c.mu.Lock()
	if len(c.series) >= maxCachedSeries {
		clear(c.series)
	}
	c.series[h] = v
	c.mu.Unlock()
	return v, nil
}
