package enginestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// exportQueryable reads raw samples from VictoriaMetrics'
// /api/v1/export: one JSON object per line, {"metric":{...},
// "values":[...],"timestamps":[...]}, for every series matching match[]
// within [start, end]. vmselect serves it under /select/<tenant>/prometheus.
type exportQueryable struct {
	base   string
	client *http.Client
	labels *labelsAPI
}

func (e *exportQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &exportQuerier{labelsQuerier: labelsQuerier{api: e.labels, mint: mint, maxt: maxt}, e: e}, nil
}

type exportQuerier struct {
	labelsQuerier
	e *exportQueryable
}

type exportLine struct {
	Metric map[string]string `json:"metric"`
	// Values are null for staleness markers, which must stay markers:
	// decoded as 0 they would read as an index reset.
	Values     []*float64 `json:"values"`
	Timestamps []int64    `json:"timestamps"`
}

func (q *exportQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	params := url.Values{
		"match[]": {selector(ms)},
		"start":   {strconv.FormatFloat(float64(apiTime(mint).UnixMilli())/1000, 'f', 3, 64)},
		"end":     {strconv.FormatFloat(float64(apiTime(maxt).UnixMilli())/1000, 'f', 3, 64)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.e.base+"/api/v1/export", nil)
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("export request: %w", err))
	}
	// The form goes in the body: a perimeter's matchers can be long.
	req.URL.RawQuery = ""
	req.Body = io.NopCloser(stringsReader(params.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := q.e.client.Do(req)
	if err != nil {
		return storage.ErrSeriesSet(fmt.Errorf("reading raw samples from the engine: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return storage.ErrSeriesSet(fmt.Errorf("engine export answered %s: %s", resp.Status, b))
	}
	var b seriesBuilder
	dec := json.NewDecoder(resp.Body)
	for {
		var l exportLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return storage.ErrSeriesSet(fmt.Errorf("decoding the engine's export: %w", err))
		}
		if len(l.Values) != len(l.Timestamps) {
			return storage.ErrSeriesSet(fmt.Errorf("engine export: %d values for %d timestamps", len(l.Values), len(l.Timestamps)))
		}
		vs := make([]float64, len(l.Values))
		for i, v := range l.Values {
			if v == nil {
				vs[i] = math.Float64frombits(value.StaleNaN)
				continue
			}
			vs[i] = *v
		}
		b.add(labels.FromMap(l.Metric), l.Timestamps, vs, mint, maxt)
	}
	return b.set(nil)
}
