package enginestore

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// floatSample is one raw sample read back from an engine.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                    { return s.t }
func (floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                  { return s.f }
func (floatSample) H() *histogram.Histogram       { return nil }
func (floatSample) FH() *histogram.FloatHistogram { return nil }
func (floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample         { return s }

// seriesBuilder gathers samples by series from answers that may split one
// series over several records (VictoriaMetrics' export streams a series
// block by block) or repeat a timestamp (a batch delivered twice to an
// engine that does not deduplicate), and turns them into the sorted,
// strictly increasing series storage.Series promises.
type seriesBuilder struct {
	byKey map[string]*builtSeries
}

type builtSeries struct {
	lset    labels.Labels
	samples []floatSample
}

func (b *seriesBuilder) add(lset labels.Labels, ts []int64, vs []float64, mint, maxt int64) {
	if b.byKey == nil {
		b.byKey = map[string]*builtSeries{}
	}
	k := lset.String()
	s, ok := b.byKey[k]
	if !ok {
		s = &builtSeries{lset: lset}
		b.byKey[k] = s
	}
	for i, t := range ts {
		if t < mint || t > maxt {
			continue
		}
		s.samples = append(s.samples, floatSample{t: t, f: vs[i]})
	}
}

func (b *seriesBuilder) set(ws annotations.Annotations) storage.SeriesSet {
	out := make([]storage.Series, 0, len(b.byKey))
	for _, s := range b.byKey {
		slices.SortStableFunc(s.samples, func(x, y floatSample) int {
			switch {
			case x.t < y.t:
				return -1
			case x.t > y.t:
				return 1
			}
			return 0
		})
		// Keep the last value written for a timestamp, as a TSDB would
		// keep one.
		var dedup []chunks.Sample
		for i, smp := range s.samples {
			if i+1 < len(s.samples) && s.samples[i+1].t == smp.t {
				continue
			}
			dedup = append(dedup, smp)
		}
		if len(dedup) == 0 {
			continue
		}
		out = append(out, storage.NewListSeries(s.lset, dedup))
	}
	slices.SortFunc(out, func(x, y storage.Series) int { return labels.Compare(x.Labels(), y.Labels()) })
	return &sliceSet{series: out, warnings: ws}
}

type sliceSet struct {
	series   []storage.Series
	cur      int
	warnings annotations.Annotations
}

func (s *sliceSet) Next() bool {
	if s.cur >= len(s.series) {
		return false
	}
	s.cur++
	return true
}
func (s *sliceSet) At() storage.Series                { return s.series[s.cur-1] }
func (*sliceSet) Err() error                          { return nil }
func (s *sliceSet) Warnings() annotations.Annotations { return s.warnings }

// selector writes matchers as a PromQL series selector.
func selector(ms []*labels.Matcher) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, m.String())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// apiTime bounds a storage time (which may be math.MinInt64 or
// math.MaxInt64 for "no bound") to something an HTTP API accepts.
func apiTime(ms int64) time.Time {
	const maxMS = 1 << 52 // far beyond any reading, exact as float64
	switch {
	case ms < 0:
		return time.UnixMilli(0)
	case ms > maxMS || ms == math.MaxInt64:
		return time.UnixMilli(maxMS)
	}
	return time.UnixMilli(ms)
}
