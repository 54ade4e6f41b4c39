package gate

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

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
func readDaily(ctx context.Context, q storage.Queryable, sealed *sealedReads, source string, days []localday.Day, tolerance time.Duration) (dailyValues, error) {
	r, err := readIndex(ctx, q, sealed, source, days, tolerance)
	if err != nil {
		return nil, err
	}
	out := make(dailyValues, len(days))
	for _, d := range days {
		vals := map[string]float64{}
		from, to := r.span(d)
		for rmp, rd := range r.readings {
			if v, ok := r.energy(rd, from, to); ok {
				vals[rmp] = v
			}
		}
		out[d] = vals
	}
	return out, nil
}

// indexRead is every RMP's index at the local midnights around some days.
type indexRead struct {
	midnights []int64              // increasing
	readings  map[string][]float64 // rmp → index at each midnight; NaN unknown, conflict disagreeing
}

// conflict marks a reading on which two series of one RMP disagree.
var conflict = math.Inf(-1)

// span returns the positions in midnights of the midnights opening and
// closing day d.
func (r *indexRead) span(d localday.Day) (int, int) {
	from, _ := slices.BinarySearch(r.midnights, timestamp.FromTime(d.Start()))
	to, _ := slices.BinarySearch(r.midnights, timestamp.FromTime(d.End()))
	return from, to
}

// energy is the daily energy between the readings at from and to, and
// false when the RMP contributes nothing: a reading missing or in
// conflict, or the index going down (meter replaced).
func (*indexRead) energy(r []float64, from, to int) (float64, bool) {
	a, b := r[from], r[to]
	if math.IsNaN(a) || math.IsNaN(b) || a == conflict || b == conflict || b < a {
		return 0, false
	}
	return b - a, true
}

// readIndex reads the index register source at the midnights opening and
// closing each of days: a reading at midnight M is the last sample in
// (M-tolerance, M]. Under WithSlicedRead it reads by blocks, and reads of
// sealed blocks are remembered in sealed (nil: not remembered).
func readIndex(ctx context.Context, q storage.Queryable, sealed *sealedReads, source string, days []localday.Day, tolerance time.Duration) (*indexRead, error) {
	if len(days) == 0 {
		return &indexRead{readings: map[string][]float64{}}, nil
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
	if b, _ := ctx.Value(slicedReadKey{}).(*blockReads); b != nil {
		if r, ok, err := b.readIndex(ctx, q, sealed, source, midnights, tol); ok {
			return r, err
		}
	}
	return readIndexAt(ctx, q, source, midnights, tol, 0)
}

// readIndexAt reads the index register source at midnights (increasing,
// not empty): a reading at midnight M is the last sample in (M-tol, M].
// rmps is how many RMPs the caller expects (0 when it does not know).
func readIndexAt(ctx context.Context, q storage.Queryable, source string, midnights []int64, tol int64, rmps int) (*indexRead, error) {
	mint, maxt := midnights[0]-tol+1, midnights[len(midnights)-1]

	querier, err := q.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("opening storage for %s: %w", source, err)
	}
	defer querier.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt}
	set := querier.Select(ctx, false, hints, readMatchers(ctx, source)...)

	// readings[rmp][i] is the index at midnights[i]; NaN when unknown.
	readings := make(map[string][]float64, rmps)
	rows := rowAllocator{n: len(midnights), rows: rmps}
	var it chunkenc.Iterator
	got := make([]float64, len(midnights))
	for set.Next() {
		s := set.At()
		rmp := s.Labels().Get(catalogue.LabelRMP)
		if rmp == "" {
			continue
		}
		r := readings[rmp]
		if r == nil {
			r = rows.next()
			// A copy: the label's string holds the whole label set of the
			// series, which a kept read (sealed.go) would pin.
			readings[strings.Clone(rmp)] = r
		}
		it = s.Iterator(it)
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
	return &indexRead{midnights: midnights, readings: readings}, nil
}

// rowAllocator hands out rows of n readings, all NaN (unknown), carved
// from slabs of about rows rows: one allocation per slab instead of one
// per RMP.
type rowAllocator struct {
	n, rows int
	slab    []float64
}

func (a *rowAllocator) next() []float64 {
	if len(a.slab) < a.n {
		a.slab = make([]float64, a.n*min(max(a.rows, 64), 8192))
		for i := range a.slab {
			a.slab[i] = math.NaN()
		}
	}
	r := a.slab[:a.n:a.n]
	a.slab = a.slab[a.n:]
	return r
}
