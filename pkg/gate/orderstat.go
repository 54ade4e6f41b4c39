package gate

import (
	"math"
	"math/bits"
	"slices"
	"sync"
)

// orderStats answers order statistics of a group's values (the value of
// rank r, as if the values were sorted) without sorting them. An export
// asks the three quartiles of each group, that is six ranks; sorting every
// group for them was a sixth to a fifth of a year's export CPU. Each
// selection partitions only the bracket between the nearest positions that
// earlier selections already fixed, so the six ranks cost O(n) expected in
// all.
//
// Values are ordered as sort.Float64s orders them (NaN before every
// number), so at(r) is the value sorting then indexing gives. Values that
// order equally are interchangeable, bit for bit, except −0 and +0 (and
// NaNs of different payloads): which of those lands on a rank is
// unspecified, as it is for the unstable sort. A group's values are daily
// energies, b − a of two readings with b ≥ a (indexRead.energy), so
// neither NaN nor −0; still, the first selection moves any NaN to the
// front, so that the partitions compare numbers only and can use < rather
// than the slower cmp.Less.
//
// A group is shared by the queries of a read cache (and by the groups of
// other perimeters with the same meters, sameGroup), which the exporter
// evaluates on several goroutines: the lazy state is guarded by mu.
type orderStats struct {
	mu     sync.Mutex
	values []float64 // the group's values, permuted in place by selections
	// fixed lists, in increasing order, the positions p whose value is
	// final: values[p] is the value of rank p, every value before it orders
	// before or with it and every value after it with or after it. Rank r
	// is therefore found among the positions between the fixed neighbours
	// of r. Every pivot a selection places is kept, not only the ranks
	// asked: they narrow the brackets of the ranks asked next.
	fixed []int
	// nanFirst says that NaNs, if any, have been moved to the front.
	nanFirst bool
}

// newOrderStats takes ownership of values, which the selections reorder.
func newOrderStats(values []float64) *orderStats {
	return &orderStats{values: values}
}

// add appends a value; only while the group is built, before it is shared
// (it does not lock, and positions fixed earlier would no longer hold).
func (o *orderStats) add(v float64) {
	o.values = append(o.values, v)
}

// at returns the value of rank r (0 ≤ r < n) in increasing order.
func (o *orderStats) at(r int) float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.selectRank(r, selectDepthBudget(len(o.values)))
}

// quantile is quantileSorted(q, sorted values): the same two ranks and the
// same interpolation, so the same bits.
func (o *orderStats) quantile(q float64) float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.values)
	if n == 0 {
		return math.NaN()
	}
	lo, hi, w := quantileRanks(q, n)
	budget := selectDepthBudget(n)
	return interpolate(o.selectRank(lo, budget), o.selectRank(hi, budget), w)
}

// selectDepthBudget is how many partitions one selection may make before
// it sorts its bracket instead: twice the expected depth, as introsort
// does. Median-of-three and ninther pivots make running out unlikely, but
// meter values come from outside and could be crafted against the pivot
// rule; the sort keeps the worst case at O(n log n).
func selectDepthBudget(n int) int {
	return 2 * bits.Len(uint(n))
}

// smallBracket is the size up to which a bracket is sorted rather than
// partitioned: an insertion sort of a few values is cheaper than pivoting.
const smallBracket = 12

// selectRank places the value of rank r at values[r] and returns it,
// partitioning at most budget times. o.mu must be held.
func (o *orderStats) selectRank(r int, budget int) float64 {
	if !o.nanFirst {
		o.moveNaNFirst()
	}
	v := o.values
	i, done := slices.BinarySearch(o.fixed, r)
	if done {
		return v[r]
	}
	// The bracket [lo, hi] lies between the fixed neighbours of r: every
	// value before lo orders before or with every value in it, every value
	// after hi with or after, so rank r is among v[lo..hi].
	lo, hi := 0, len(v)-1
	if i > 0 {
		lo = o.fixed[i-1] + 1
	}
	if i < len(o.fixed) {
		hi = o.fixed[i] - 1
	}
	for {
		switch {
		case r == lo:
			// The first rank of a bracket is its smallest value: one scan
			// (quartiles ask rank ⌊φ(n−1)⌋ then the next, which is this).
			m := lo
			for j := lo + 1; j <= hi; j++ {
				if v[j] < v[m] {
					m = j
				}
			}
			v[lo], v[m] = v[m], v[lo]
		case r == hi:
			m := hi
			for j := lo; j < hi; j++ {
				if v[m] < v[j] {
					m = j
				}
			}
			v[hi], v[m] = v[m], v[hi]
		case hi-lo < smallBracket || budget == 0:
			slices.Sort(v[lo : hi+1])
		default:
			budget--
			p := partitionBracket(v, lo, hi)
			o.fix(p)
			switch {
			case r < p:
				hi = p - 1
				continue
			case r > p:
				lo = p + 1
				continue
			}
			return v[r]
		}
		o.fix(r)
		return v[r]
	}
}

// moveNaNFirst moves the NaNs before the numbers, where sorting puts them,
// and fixes the last NaN's position, so that no bracket mixes NaNs and
// numbers: the ranks of numbers are then selected comparing with <, and
// those of NaNs, all alike, whichever way.
func (o *orderStats) moveNaNFirst() {
	o.nanFirst = true
	nans := 0
	for i, x := range o.values {
		if math.IsNaN(x) {
			o.values[i], o.values[nans] = o.values[nans], x
			nans++
		}
	}
	if nans > 0 {
		o.fix(nans - 1)
	}
}

// fix records that position p is final.
func (o *orderStats) fix(p int) {
	if o.fixed == nil {
		// Room for what the quartiles usually fix, in one allocation: a
		// few pivots per selection, six selections.
		o.fixed = make([]int, 0, 4*bits.Len(uint(len(o.values))))
	}
	i, found := slices.BinarySearch(o.fixed, p)
	if !found {
		o.fixed = slices.Insert(o.fixed, i, p)
	}
}

// nintherFrom is the bracket size from which the pivot is Tukey's ninther
// (the median of three medians of three) rather than a median of three: a
// closer estimate of the median, so fewer partitions, where its eight
// comparisons are cheap next to the partition.
const nintherFrom = 40

// partitionBracket reorders v[lo..hi] (more than two values) around a
// pivot and returns the pivot's final position p: v[lo..p-1] order before
// or with v[p], v[p+1..hi] with or after it. Both scans stop at values
// equal to the pivot, so many equal values (rounded readings, idle meters
// at 0) still split the bracket near its middle rather than at one end.
func partitionBracket(v []float64, lo, hi int) int {
	m := lo + (hi-lo)/2
	if hi-lo+1 >= nintherFrom {
		s := (hi - lo) / 8
		m = median3(v,
			median3(v, lo, lo+s, lo+2*s),
			median3(v, m-s, m, m+s),
			median3(v, hi-2*s, hi-s, hi))
	} else {
		m = median3(v, lo, m, hi)
	}
	v[lo], v[m] = v[m], v[lo]
	pivot := v[lo]
	i, j := lo, hi+1
	for {
		for i++; i < hi && v[i] < pivot; i++ {
		}
		for j--; j > lo && pivot < v[j]; j-- {
		}
		if i >= j {
			break
		}
		v[i], v[j] = v[j], v[i]
	}
	// v[j] orders before or with the pivot and so do all before it.
	v[lo], v[j] = v[j], v[lo]
	return j
}

// median3 returns whichever of positions a, b and c holds the median of
// their values.
func median3(v []float64, a, b, c int) int {
	if v[b] < v[a] {
		a, b = b, a
	}
	// v[a] ≤ v[b]
	if v[c] < v[b] {
		if v[c] < v[a] {
			return a
		}
		return c
	}
	return b
}
