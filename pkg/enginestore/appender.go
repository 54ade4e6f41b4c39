package enginestore

import (
	"errors"
	"fmt"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// appender gathers one request's samples into one remote-write 1.0 batch
// (the version every supported engine accepts, VictoriaMetrics 1.79
// included). Series were validated by remote/ingest before they get here.
type appender struct {
	queue  *Queue
	series map[uint64]*prompb.TimeSeries
	order  []uint64
}

func newAppender(q *Queue) *appender {
	return &appender{queue: q, series: map[uint64]*prompb.TimeSeries{}}
}

var errHistogram = errors.New("remote storage: native histograms are not forwarded")

func (a *appender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	if h != nil || fh != nil {
		return 0, errHistogram
	}
	key := ls.Hash()
	ts, ok := a.series[key]
	if !ok {
		ts = &prompb.TimeSeries{Labels: make([]prompb.Label, 0, ls.Len())}
		ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		a.series[key] = ts
		a.order = append(a.order, key)
	}
	ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: v})
	// A non-zero reference that stands for the series, as the interface
	// requires; the ingest handler only passes it back to us.
	return storage.SeriesRef(key | 1), nil
}

// Commit returns once the batch is durably in the forward queue.
func (a *appender) Commit() error {
	if len(a.order) == 0 {
		return nil
	}
	req := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(a.order))}
	for _, k := range a.order {
		req.Timeseries = append(req.Timeseries, *a.series[k])
	}
	a.series, a.order = nil, nil
	raw, err := req.Marshal()
	if err != nil {
		return fmt.Errorf("encoding a batch for the engine: %w", err)
	}
	return a.queue.Enqueue(snappy.Encode(nil, raw))
}

func (a *appender) Rollback() error {
	a.series, a.order = nil, nil
	return nil
}
