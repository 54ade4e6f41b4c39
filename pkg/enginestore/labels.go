package enginestore

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// labelsAPI answers label names and values from the engine's
// /api/v1/labels and /api/v1/label/<name>/values, which every supported
// engine serves (remote read has no such call: Prometheus's remote-read
// querier answers them empty).
type labelsAPI struct{ api v1.API }

func newLabelsAPI(base string, rt http.RoundTripper) (*labelsAPI, error) {
	c, err := api.NewClient(api.Config{Address: base, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("read_url: %w", err)
	}
	return &labelsAPI{api: v1.NewAPI(c)}, nil
}

// labelsQuerier is the label half of a storage.Querier over [mint, maxt].
type labelsQuerier struct {
	api        *labelsAPI
	mint, maxt int64
}

func matches(ms []*labels.Matcher) []string {
	if len(ms) == 0 {
		return nil
	}
	return []string{selector(ms)}
}

func (q labelsQuerier) LabelNames(ctx context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	names, _, _, err := q.api.api.LabelNames(ctx, matches(ms), apiTime(q.mint), apiTime(q.maxt))
	if err != nil {
		return nil, nil, fmt.Errorf("label names from the engine: %w", err)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return out, nil, nil
}

func (q labelsQuerier) LabelValues(ctx context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	vals, _, _, err := q.api.api.LabelValues(ctx, name, matches(ms), apiTime(q.mint), apiTime(q.maxt))
	if err != nil {
		return nil, nil, fmt.Errorf("values of label %s from the engine: %w", name, err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out, nil, nil
}

func (labelsQuerier) Close() error { return nil }
