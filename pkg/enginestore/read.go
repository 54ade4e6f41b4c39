package enginestore

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// remoteReadQueryable reads raw samples with Prometheus's own remote-read
// client (/api/v1/read; Mimir serves it under /prometheus/api/v1/read).
type remoteReadQueryable struct {
	q      storage.Queryable
	labels *labelsAPI
}

func newRemoteReadQueryable(o Options, la *labelsAPI) (*remoteReadQueryable, error) {
	u, err := url.Parse(strings.TrimSuffix(o.ReadURL, "/") + "/api/v1/read")
	if err != nil {
		return nil, fmt.Errorf("read_url: %w", err)
	}
	c, err := remote.NewReadClient("metergate", &remote.ClientConfig{
		URL:              &config_util.URL{URL: u},
		Timeout:          model.Duration(o.Timeout),
		HTTPClientConfig: config_util.DefaultHTTPClientConfig,
		Headers:          o.headers(),
		// Prometheus's default bound on one streamed chunk frame (its
		// remote_read chunked_read_limit); zero would refuse every frame.
		ChunkedReadLimit: 50 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("remote-read client: %w", err)
	}
	// readRecent: every sample is remote, there is no local storage to
	// prefer for recent data.
	q := remote.NewSampleAndChunkQueryableClient(c, labels.EmptyLabels(), nil, true, func() (int64, error) { return 0, nil })
	return &remoteReadQueryable{q: q, labels: la}, nil
}

func (r *remoteReadQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := r.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return &remoteReadQuerier{labelsQuerier: labelsQuerier{api: r.labels, mint: mint, maxt: maxt}, q: q}, nil
}

type remoteReadQuerier struct {
	labelsQuerier
	q storage.Querier
}

func (r *remoteReadQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return r.q.Select(ctx, sortSeries, hints, ms...)
}

func (r *remoteReadQuerier) Close() error { return r.q.Close() }

// queryAPIQueryable reads raw samples through /api/v1/query: an instant
// query of a range selector sel[d] at t returns every raw sample of the
// window, unaggregated. Thanos Query speaks remote read only over gRPC
// (StoreAPI), so this is how metergate reads it over HTTP.
type queryAPIQueryable struct {
	api     v1.API
	timeout time.Duration
	labels  *labelsAPI
}

func newQueryAPIQueryable(base string, rt http.RoundTripper, timeout time.Duration, la *labelsAPI) (*queryAPIQueryable, error) {
	c, err := api.NewClient(api.Config{Address: base, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("read_url: %w", err)
	}
	return &queryAPIQueryable{api: v1.NewAPI(c), timeout: timeout, labels: la}, nil
}

func (a *queryAPIQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &queryAPIQuerier{labelsQuerier: labelsQuerier{api: a.labels, mint: mint, maxt: maxt}, a: a}, nil
}

type queryAPIQuerier struct {
	labelsQuerier
	a *queryAPIQueryable
}

func (q *queryAPIQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := apiTime(q.mint).UnixMilli(), apiTime(q.maxt).UnixMilli()
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	if maxt < mint {
		return storage.EmptySeriesSet()
	}
	// Range selectors are left-open in Prometheus 3 and left-closed in 2:
	// one millisecond more covers mint in both, and the builder drops what
	// falls outside [mint, maxt].
	expr := fmt.Sprintf("%s[%dms]", selector(ms), maxt-mint+1)
	v, warnings, _, err := q.a.api.Query(ctx, expr, time.UnixMilli(maxt), v1.WithTimeout(q.a.timeout))
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("reading raw samples from the engine: %w", err))
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return storage.ErrSeriesSet(fmt.Errorf("engine answered a %s to a range selector", v.Type()))
	}
	var b seriesBuilder
	for _, s := range m {
		lb := labels.NewScratchBuilder(len(s.Metric))
		for k, v := range s.Metric {
			lb.Add(string(k), string(v))
		}
		lb.Sort()
		ts := make([]int64, len(s.Values))
		vs := make([]float64, len(s.Values))
		for i, p := range s.Values {
			ts[i], vs[i] = int64(p.Timestamp), float64(p.Value)
		}
		b.add(lb.Labels(), ts, vs, mint, maxt)
	}
	var ws annotations.Annotations
	for _, w := range warnings {
		ws.Add(fmt.Errorf("engine: %s", w))
	}
	return b.set(ws)
}
