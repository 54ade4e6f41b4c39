package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/metergate/metergate/pkg/catalogue"
)

// Reasons a series or sample is refused, as counted in /metrics.
const (
	ReasonNotInCatalogue = "not_in_catalogue"
	ReasonNoConsent      = "curve_without_consent"
	ReasonTooOld         = "too_old"
	ReasonDuplicate      = "duplicate_timestamp"
	ReasonHistogram      = "native_histogram"
	ReasonSeriesLimit    = "new_series_limit"
	ReasonInvalidLabels  = "invalid_labels"
)

// errTooManySamples stops a request at write.max_samples_per_request; the
// write handler rolls the request back and the HTTP layer answers 413.
var errTooManySamples = errors.New("too many samples in one request")

// refusals collects what one request refused, so that the HTTP layer can
// answer 400 naming the series while the valid ones are committed.
type refusals struct {
	mu      sync.Mutex
	series  map[string]int // "series: reason" -> samples refused
	order   []string
	samples int

	sender  string // for the new-series limit
	seen    int    // samples appended or refused so far
	tooMany bool   // the request went past max_samples_per_request

	shared         bool // appending alongside other requests (WALGuard)
	needsExclusive bool // a shared attempt met a series not known to be in the WAL
}

func (r *refusals) add(ls labels.Labels, reason string, err error) {
	key := fmt.Sprintf("%s: %s (%s)", ls.String(), err.Error(), reason)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.series[key]; !ok {
		r.order = append(r.order, key)
	}
	r.series[key]++
	r.samples++
}

// addInvalid records samples of series Prometheus's handler skipped for
// their labels before they reached the appender.
func (r *refusals) addInvalid(samples int) {
	key := fmt.Sprintf("%d samples of series without a metric name, with invalid UTF-8 or with duplicate label names (%s)", samples, ReasonInvalidLabels)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, key)
	r.series[key] += samples
	r.samples += samples
}

type refusalsKey struct{}

func withRefusals(ctx context.Context) (context.Context, *refusals) {
	r := &refusals{series: map[string]int{}}
	return context.WithValue(ctx, refusalsKey{}, r), r
}

// validatingAppendable checks every series against the catalogue and the
// collection policy before it reaches storage. It never fails a request for
// a bad series: it skips it and records why, so the good series of the same
// request are stored and the sender still learns, by a 400, what was wrong.
type validatingAppendable struct {
	next         storage.AppendableV2
	curveOK      func(rmp string, t time.Time) bool
	needsConsent func(*catalogue.Metric) bool
	metrics      *metrics
	maxSamples   int
	series       *SeriesLimiter
	wal          *WALGuard
	valid        *validCache
	// validatedMaps keeps the appenders' validated maps from request to
	// request: built anew, a map of 2,000 live series grew and rehashed its
	// way up on every request (a tenth of the live shape's CPU).
	validatedMaps sync.Pool
}

func (v *validatingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	next := v.next.AppenderV2(ctx)
	ex, _ := next.(storage.ExemplarAppenderV2)
	refused, _ := ctx.Value(refusalsKey{}).(*refusals)
	if refused == nil {
		refused = &refusals{series: map[string]int{}}
	}
	validated, _ := v.validatedMaps.Get().(map[storage.SeriesRef]*validSeries)
	if validated == nil {
		validated = map[storage.SeriesRef]*validSeries{}
	}
	return &validatingAppender{ExemplarAppenderV2: ex, next: next, parent: v, refused: refused,
		validated: validated, pendingRefused: map[string]int{}}
}

type validatingAppender struct {
	storage.ExemplarAppenderV2 // nil if next cannot take exemplars; the handler checks
	next                       storage.AppenderV2
	parent                     *validatingAppendable
	refused                    *refusals
	appended                   int
	validated                  map[storage.SeriesRef]*validSeries
	newSeries                  []uint64 // admitted by the series limit in this request
	pendingRefused             map[string]int
	refs                       map[uint64]storage.SeriesRef // series appended alone, recorded in the WALGuard at commit
}

// refuse records a refused sample. It is counted in /metrics at Commit
// only: a request rolled back as a whole (413, storage failure) refused
// nothing by itself.
func (a *validatingAppender) refuse(ls labels.Labels, reason string, err error) (storage.SeriesRef, error) {
	a.refused.add(ls, reason, err)
	a.pendingRefused[reason]++
	return 0, nil
}

func (a *validatingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	return a.append(ref, ls, nil, st, t, v, h, fh, opts)
}

// append is Append for a caller that may have looked ls up in the
// validation cache already (known, nil if not).
func (a *validatingAppender) append(ref storage.SeriesRef, ls labels.Labels, known *validSeries, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	// Counted before anything else: a request past the limit is refused as
	// a whole, whatever its samples are.
	a.refused.seen++
	if limit := a.parent.maxSamples; limit > 0 && a.refused.seen > limit {
		a.refused.tooMany = true
		return 0, errTooManySamples
	}
	// A ref this appender returned belongs to a series it already validated
	// in this request; only the timestamp needs checking again.
	seen, ok := a.validated[ref]
	fresh := ref == 0 || !ok
	if !fresh {
		known = seen
	} else {
		if known == nil {
			var err error
			if known, err = a.parent.valid.validate(ls); err != nil {
				return a.refuse(ls, ReasonNotInCatalogue, err)
			}
		}
		// The cache's copy of the labels: the caller's may sit in a buffer
		// it reuses, and storage keeps the labels of a series it creates.
		ls = known.labels
		if ref == 0 {
			ref = known.seriesRef()
		}
		if lim := a.parent.series; lim != nil {
			h := known.hash
			admitted, isNew := lim.Admit(a.refused.sender, h)
			if !admitted {
				return a.refuse(ls, ReasonSeriesLimit, fmt.Errorf("new series refused: the sender created %d new series today (write.max_new_series_per_day); existing series are still accepted", lim.Max()))
			}
			if isNew {
				a.newSeries = append(a.newSeries, h)
			}
		}
	}
	if h != nil || fh != nil {
		return a.refuse(ls, ReasonHistogram, errors.New("native histograms are not in the catalogue"))
	}
	if a.parent.needsConsent(known.metric) {
		ts := time.UnixMilli(t)
		if !a.parent.curveOK(known.rmp, ts) {
			return a.refuse(ls, ReasonNoConsent, fmt.Errorf("load curve point at %s without a consent in force: curves are collected only with consent", ts.UTC().Format(time.RFC3339)))
		}
	}
	newRef, err := a.next.Append(ref, ls, st, t, v, nil, nil, opts)
	if err == nil && fresh {
		known.appended(newRef)
	}
	if g := a.parent.wal; err == nil && g != nil && fresh {
		h := known.hash
		switch {
		case !a.refused.shared:
			if a.refs == nil {
				a.refs = map[uint64]storage.SeriesRef{}
			}
			a.refs[h] = newRef
		case !g.isLogged(h, newRef):
			a.refused.needsExclusive = true
			return 0, errNeedsExclusive
		}
	}
	switch {
	case err == nil:
		a.appended++
		a.validated[newRef] = known
		return newRef, nil
	case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrTooOldSample):
		return a.refuse(ls, ReasonTooOld, fmt.Errorf("sample at %s is older than the out-of-order window allows", time.UnixMilli(t).UTC().Format(time.RFC3339)))
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return a.refuse(ls, ReasonDuplicate, fmt.Errorf("another value was already stored at %s", time.UnixMilli(t).UTC().Format(time.RFC3339)))
	default:
		return newRef, err
	}
}

func (a *validatingAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	if a.ExemplarAppenderV2 == nil || ref == 0 {
		return ref, nil // exemplars of refused series, or a store without exemplars: dropped
	}
	return a.ExemplarAppenderV2.AppendExemplars(ref, ls, es)
}

func (a *validatingAppender) Commit() error {
	var err error
	if g := a.parent.wal; g != nil && a.refused.shared {
		// Alone (not shared), no other appender is open: no other commit
		// can overlap this one.
		err = g.commitAlone(a.next.Commit)
	} else {
		err = a.next.Commit()
	}
	a.release()
	if err != nil {
		return fmt.Errorf("committing %d samples: %w", a.appended, err)
	}
	if a.parent.wal != nil && a.refs != nil {
		a.parent.wal.record(a.refs)
	}
	a.parent.metrics.ingested.Add(float64(a.appended))
	for reason, n := range a.pendingRefused {
		a.parent.metrics.refused.WithLabelValues(reason).Add(float64(n))
		if reason == ReasonSeriesLimit {
			a.parent.metrics.limitHits.WithLabelValues(LimitNewSeriesPerDay).Add(float64(n))
		}
	}
	return nil
}

func (a *validatingAppender) Rollback() error {
	if a.parent.series != nil {
		a.parent.series.Release(a.refused.sender, a.newSeries)
	}
	a.release()
	return a.next.Rollback()
}

// release gives the validated map back for the next request's appender.
func (a *validatingAppender) release() {
	if a.validated != nil {
		clear(a.validated)
		a.parent.validatedMaps.Put(a.validated)
		a.validated = nil
	}
}
