package gate

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
)

// dailyValues maps a day to the daily energy of each RMP that contributes
// to it. An RMP is absent, never zero, when a reading is missing.
type dailyValues map[localday.Day]map[string]float64

// readDaily computes the daily energy of each RMP for each of days from the
// index register source: index at the local midnight closing the day minus
// the index at the local midnight opening it. A reading at midnight M is the
// last sample in (M-tolerance, M]. Going through local midnights keeps 23-
// and 25-hour days right. An RMP contributes nothing to a day when either
// reading is missing, when its series disagree about a reading, or when the
// index went down (meter replaced): absent, never zero.
func readDaily(ctx context.Context, q storage.Queryable, source string, days []localday.Day, tolerance time.Duration) (dailyValues, error) {
	out := make(dailyValues, len(days))
	if len(days) == 0 {
		return out, nil
	}
	// The midnights to read, in increasing order.
	var midnights []int64
	for _, d := range days {
		midnights = append(midnights, timestamp.FromTime(d.Start()), timestamp.FromTime(d.End()))
	}
	slices.Sort(midnights)
	midnights = slices.Compact(midnights)
	tol := tolerance.Milliseconds()
	if tol <= 0 {
		tol = 1
	}
	mint, maxt := midnights[0]-tol+1, midnights[len(midnights)-1]

	querier, err := q.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("opening storage for %s: %w", source, err)
	}
	defer querier.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt}
	set := querier.Select(ctx, false, hints, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, source))

	// readings[rmp][i] is the index at midnights[i]; NaN when unknown.
	conflict := math.Inf(-1) // two series of one RMP disagree
	readings := map[string][]float64{}
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		rmp := s.Labels().Get(catalogue.LabelRMP)
		if rmp == "" {
			continue
		}
		r := readings[rmp]
		if r == nil {
			r = make([]float64, len(midnights))
			for i := range r {
				r[i] = math.NaN()
			}
			readings[rmp] = r
		}
		it = s.Iterator(it)
		got := make([]float64, len(midnights))
		for i := range got {
			got[i] = math.NaN()
		}
		i := 0
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue
			}
			t, v := it.At()
			if value.IsStaleNaN(v) || math.IsNaN(v) {
				continue
			}
			for i < len(midnights) && midnights[i] < t {
				i++
			}
			if i == len(midnights) {
				break
			}
			if t > midnights[i]-tol {
				got[i] = v // later samples in the window overwrite earlier ones
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("reading %s of %s: %w", source, rmp, err)
		}
		for i, v := range got {
			switch {
			case math.IsNaN(v):
			case math.IsNaN(r[i]):
				r[i] = v
			case r[i] != v:
				r[i] = conflict
			}
		}
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("selecting %s: %w", source, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, d := range days {
		from, _ := slices.BinarySearch(midnights, timestamp.FromTime(d.Start()))
		to, _ := slices.BinarySearch(midnights, timestamp.FromTime(d.End()))
		vals := map[string]float64{}
		for rmp, r := range readings {
			a, b := r[from], r[to]
			if math.IsNaN(a) || math.IsNaN(b) || a == conflict || b == conflict || b < a {
				continue
			}
			vals[rmp] = b - a
		}
		out[d] = vals
	}
	return out, nil
}
