package ingest

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	vmprompb "github.com/VictoriaMetrics/VictoriaMetrics/lib/prompb"
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
	// given finds a series by its labels as a 1.0 sender gives them, in
	// its order, the same every request: no labels to build, sort and hash.
	given map[uint64]givenSeries
}

type givenSeries struct {
	labels []vmprompb.Label // a copy owned by the cache, compared in full, as labels are
	series *validSeries
}

var givenSeed = maphash.MakeSeed()

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
	return &validCache{series: map[uint64]*validSeries{}, given: map[uint64]givenSeries{}}
}

// hashGiven hashes the names and values of ls in their order. A name or
// value holding the separator may collide with another list: entries are
// compared in full.
func hashGiven(ls []vmprompb.Label) uint64 {
	var h maphash.Hash
	h.SetSeed(givenSeed)
	for _, l := range ls {
		h.WriteString(l.Name)
		h.WriteByte(0xff)
		h.WriteString(l.Value)
		h.WriteByte(0xff)
	}
	return h.Sum64()
}

// lookupGiven returns the entry of the series whose labels, as given, were
// exactly ls when it was found valid, or nil. The same list builds the same
// label set, so it passes the same checks.
func (c *validCache) lookupGiven(ls []vmprompb.Label) *validSeries {
	h := hashGiven(ls)
	c.mu.RLock()
	g, ok := c.given[h]
	c.mu.RUnlock()
	if ok && slices.Equal(g.labels, ls) {
		return g.series
	}
	return nil
}

// rememberGiven records that the labels ls, as given, make the valid
// series v. ls may be strings over a request's buffer: they are copied,
// into one string.
func (c *validCache) rememberGiven(ls []vmprompb.Label, v *validSeries) {
	n := 0
	for _, l := range ls {
		n += len(l.Name) + len(l.Value)
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, l := range ls {
		sb.WriteString(l.Name)
		sb.WriteString(l.Value)
	}
	all := sb.String()
	owned := make([]vmprompb.Label, len(ls))
	for i, l := range ls {
		owned[i].Name, all = all[:len(l.Name)], all[len(l.Name):]
		owned[i].Value, all = all[:len(l.Value)], all[len(l.Value):]
	}
	h := hashGiven(ls)
	c.mu.Lock()
	if len(c.given) >= maxCachedSeries {
		clear(c.given)
	}
	c.given[h] = givenSeries{labels: owned, series: v}
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
