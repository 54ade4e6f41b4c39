package gate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// quantileOfSorted is quantileSorted as it was when groups sorted their
// values: the reference the selections must match to the bit.
func quantileOfSorted(q float64, s []float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	rank := q * float64(len(s)-1)
	lo := math.Floor(rank)
	hi := math.Min(lo+1, float64(len(s)-1))
	w := rank - lo
	return s[int(lo)]*(1-w) + s[int(hi)]*w
}

// sameBits says whether a and b are the same float64, NaN matching NaN.
func sameBits(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || math.IsNaN(a) && math.IsNaN(b)
}

// requireSelects asks ranks of values in order and compares each with
// sorting then indexing, then checks that the values were only permuted
// and that every fixed position holds its rank's value.
func requireSelects(t *testing.T, values []float64, ranks []int) {
	t.Helper()
	want := slices.Clone(values)
	sort.Float64s(want)
	o := newOrderStats(slices.Clone(values))
	for _, r := range ranks {
		if got := o.at(r); !sameBits(got, want[r]) {
			t.Fatalf("values %v, ranks %v: rank %d is %v, sorting gives %v", short(values), ranks, r, got, want[r])
		}
	}
	after := slices.Clone(o.values)
	sort.Float64s(after)
	for i := range want {
		if !sameBits(after[i], want[i]) {
			t.Fatalf("values %v: the selections changed the values (%v at rank %d, was %v)", short(values), after[i], i, want[i])
		}
	}
	require.True(t, slices.IsSorted(o.fixed), "fixed positions out of order: %v", o.fixed)
	for _, p := range o.fixed {
		if !sameBits(o.values[p], want[p]) {
			t.Fatalf("values %v: fixed position %d holds %v, rank %d is %v", short(values), p, o.values[p], p, want[p])
		}
	}
}

func short(v []float64) string {
	if len(v) > 20 {
		return fmt.Sprintf("%v… (%d values)", v[:20], len(v))
	}
	return fmt.Sprint(v)
}

func TestOrderStatsAt(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name   string
		values []float64
		ranks  []int
	}{
		{"one value", []float64{7}, []int{0, 0}},
		{"two values, smallest first", []float64{9, 3}, []int{0, 1}},
		{"two values, largest first", []float64{9, 3}, []int{1, 0}},
		{"two equal", []float64{4, 4}, []int{1, 0}},
		{"three", []float64{2, 3, 1}, []int{1, 0, 2}},
		{"small bracket sorted", []float64{5, 1, 4, 2, 3, 9, 0, 8, 7, 6}, []int{4, 5, 3}},
		{"quartile ranks of 13", []float64{13, 1, 12, 2, 11, 3, 10, 4, 9, 5, 8, 6, 7}, []int{3, 4, 6, 7, 9, 10}},
		{"all equal", slices.Repeat([]float64{1500}, 100), []int{24, 25, 49, 50, 74, 75}},
		{"two distinct values", append(slices.Repeat([]float64{0}, 60), slices.Repeat([]float64{1}, 40)...), []int{59, 60, 24, 99, 0}},
		{"infinities", []float64{inf, 1, -inf, 0, 2, inf, -inf, 3, 5, 4, 6, 7, 8, 9, 10}, []int{0, 14, 7, 1, 13}},
		{"negative values", []float64{-3, 5, -1, 0, -8, 2, 7, -2, 1, 4, -5, 3, 6, -4}, []int{3, 4, 6, 7, 9, 10}},
		{"same rank twice", []float64{8, 6, 7, 5, 3, 0, 9, 1, 2, 4, 11, 10, 13, 12}, []int{6, 6, 7, 7}},
		{"descending ranks", []float64{8, 6, 7, 5, 3, 0, 9, 1, 2, 4, 11, 10, 13, 12}, []int{13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireSelects(t, tc.values, tc.ranks)
		})
	}
}

// TestOrderStatsNaN: values are never NaN in a group (a day without a
// reading does not contribute), but if one were, ranks follow
// sort.Float64s, which puts NaNs first.
func TestOrderStatsNaN(t *testing.T) {
	nan := math.NaN()
	v := []float64{3, nan, 1, 2, nan, 5, 4, 0, 9, 8, 7, 6, nan, 10, 11, 12, 13}
	for r := range v {
		requireSelects(t, v, []int{r, len(v) - 1 - r})
	}
	requireSelects(t, v, []int{0, 1, 2, 3})
}

// TestOrderStatsQuantile: quantileSorted over the selections gives the
// bits quantileSorted gave over sorted values, for the quartiles exports
// ask and for any φ.
func TestOrderStatsQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	qs := []float64{0.25, 0.5, 0.75, 0, 1, 0.1, 0.9, 0.33, 0.999}
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 13, 100, 101, 1000, 7692} {
		for _, shape := range shapes {
			values := shape.make(rng, n)
			sorted := slices.Clone(values)
			sort.Float64s(sorted)
			o := newOrderStats(slices.Clone(values))
			for _, q := range append(qs, rng.Float64(), rng.Float64()) {
				got, want := quantileSorted(q, o), quantileOfSorted(q, sorted)
				if !sameBits(got, want) {
					t.Fatalf("%s, n=%d: quantile %v is %v (%016x), sorting gives %v (%016x)", shape.name, n, q, got, math.Float64bits(got), want, math.Float64bits(want))
				}
				if got := quantile(q, values); !sameBits(got, want) {
					t.Fatalf("%s, n=%d: quantile(%v, values) is %v, sorting gives %v", shape.name, n, q, got, want)
				}
			}
		}
	}
	require.True(t, math.IsNaN(quantileSorted(0.5, newOrderStats(nil))))
}

// shapes are the kinds of values the property test draws: meter-like
// values and the orders and repetitions that trouble quicksorts.
var shapes = []struct {
	name string
	make func(rng *rand.Rand, n int) []float64
}{
	{"random", func(rng *rand.Rand, n int) []float64 {
		return fill(n, func(int) float64 { return rng.NormFloat64() * 1e4 })
	}},
	{"daily Wh", func(rng *rand.Rand, n int) []float64 {
		// Whole watt-hours, skewed as households are: some ties.
		return fill(n, func(int) float64 { return math.Round(math.Exp(rng.NormFloat64()+9) / 10) })
	}},
	{"many ties", func(rng *rand.Rand, n int) []float64 {
		return fill(n, func(int) float64 { return float64(rng.IntN(4)) * 250 })
	}},
	{"idle meters", func(rng *rand.Rand, n int) []float64 {
		return fill(n, func(int) float64 {
			if rng.IntN(3) > 0 {
				return 0
			}
			return float64(rng.IntN(20000))
		})
	}},
	{"sorted", func(rng *rand.Rand, n int) []float64 { return fill(n, func(i int) float64 { return float64(i) }) }},
	{"reverse sorted", func(rng *rand.Rand, n int) []float64 { return fill(n, func(i int) float64 { return float64(n - i) }) }},
	{"all equal", func(rng *rand.Rand, n int) []float64 { return fill(n, func(int) float64 { return 42 }) }},
	{"organ pipe", func(rng *rand.Rand, n int) []float64 {
		return fill(n, func(i int) float64 { return float64(min(i, n-1-i)) })
	}},
	{"sawtooth", func(rng *rand.Rand, n int) []float64 { return fill(n, func(i int) float64 { return float64(i % 17) }) }},
	{"sorted, some swapped", func(rng *rand.Rand, n int) []float64 {
		v := fill(n, func(i int) float64 { return float64(i) })
		for range n/20 + 1 {
			i, j := rng.IntN(n), rng.IntN(n)
			v[i], v[j] = v[j], v[i]
		}
		return v
	}},
	{"infinities and signs", func(rng *rand.Rand, n int) []float64 {
		specials := []float64{math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 0}
		return fill(n, func(int) float64 {
			if rng.IntN(4) == 0 {
				return specials[rng.IntN(len(specials))]
			}
			return rng.NormFloat64()
		})
	}},
}

func fill(n int, f func(i int) float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = f(i)
	}
	return v
}

// TestOrderStatsProperty asks random sequences of ranks of every shape and
// size and compares each answer with sorting then indexing.
func TestOrderStatsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := []int{1, 2, 3, 4, 5, 11, 12, 13, 14, 39, 40, 41, 100, 257, 1000}
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	for _, shape := range shapes {
		for _, n := range sizes {
			for range rounds {
				values := shape.make(rng, n)
				var ranks []int
				switch rng.IntN(4) {
				case 0: // what an export asks: the quartiles' rank pairs
					for _, q := range []float64{0.25, 0.5, 0.75} {
						lo, hi, _ := quantileRanks(q, n)
						ranks = append(ranks, lo, hi)
					}
				case 1: // every rank, in random order
					ranks = rng.Perm(n)
				default: // a few random ranks, maybe repeated
					for range 1 + rng.IntN(8) {
						ranks = append(ranks, rng.IntN(n))
					}
				}
				requireSelects(t, values, ranks)
			}
		}
	}
}

// TestOrderStatsOutOfBudget exercises the introselect fallback: with no
// partitions left, a selection sorts its bracket and still answers right.
func TestOrderStatsOutOfBudget(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, budget := range []int{0, 1, 2} {
		for _, shape := range shapes {
			values := shape.make(rng, 500)
			want := slices.Clone(values)
			sort.Float64s(want)
			o := newOrderStats(slices.Clone(values))
			for _, r := range []int{124, 125, 249, 250, 374, 375, 0, 499, 300} {
				o.mu.Lock()
				got := o.selectRank(r, budget)
				o.mu.Unlock()
				require.True(t, sameBits(got, want[r]), "%s, budget %d: rank %d is %v, sorting gives %v", shape.name, budget, r, got, want[r])
			}
		}
	}
}

// TestOrderStatsWorstCase: inputs built against median-of-three pivots, or
// that trouble partitions, still give the quartiles, and no selection
// fixes more than its budget of pivots and its rank (past the budget it
// sorts its bracket: TestOrderStatsOutOfBudget).
func TestOrderStatsWorstCase(t *testing.T) {
	n := 7692
	for name, values := range map[string][]float64{
		"median-of-3 killer": medianOf3Killer(n),
		"organ pipe":         fill(n, func(i int) float64 { return float64(min(i, n-1-i)) }),
		"all equal":          fill(n, func(int) float64 { return 1 }),
	} {
		want := slices.Clone(values)
		sort.Float64s(want)
		o := newOrderStats(slices.Clone(values))
		for _, q := range []float64{0.25, 0.5, 0.75} {
			require.True(t, sameBits(o.quantile(q), quantileOfSorted(q, want)), name)
		}
		// Each selection fixes at most budget pivots and its rank.
		require.LessOrEqual(t, len(o.fixed), 6*(selectDepthBudget(n)+1), name)
	}
}

// medianOf3Killer is Musser's sequence that makes a quicksort choosing the
// median of the first, middle and last values partition badly at every
// step.
func medianOf3Killer(n int) []float64 {
	k := n / 2
	v := make([]float64, n)
	for i := 1; i <= k; i++ {
		if i%2 == 1 {
			v[i-1] = float64(i)
			v[i] = float64(k + i)
		}
		v[k+i-1] = float64(2 * i)
	}
	return v
}

// TestOrderStatsConcurrent: groups are shared by the queries of a read
// cache, which the exporter runs on several goroutines at once.
func TestOrderStatsConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	values := shapes[1].make(rng, 7692)
	sorted := slices.Clone(values)
	sort.Float64s(sorted)
	o := newOrderStats(slices.Clone(values))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 200 {
				q := []float64{0.25, 0.5, 0.75}[rng.IntN(3)]
				if got, want := o.quantile(q), quantileOfSorted(q, sorted); !sameBits(got, want) {
					errs <- fmt.Errorf("quantile %v is %v, want %v", q, got, want)
					return
				}
				r := rng.IntN(len(sorted))
				if got := o.at(r); got != sorted[r] {
					errs <- fmt.Errorf("rank %d is %v, want %v", r, got, sorted[r])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkQuartiles compares what a group's three quartiles cost sorted
// (as groups did) and selected, from fresh values each time.
func BenchmarkQuartiles(b *testing.B) {
	rng := rand.New(rand.NewPCG(10, 11))
	for _, n := range []int{100, 1000, 7692} {
		values := shapes[1].make(rng, n) // daily Wh
		b.Run(fmt.Sprintf("n=%d/sort", n), func(b *testing.B) {
			b.ReportAllocs()
			var sink float64
			for b.Loop() {
				s := slices.Clone(values)
				sort.Float64s(s)
				for _, q := range []float64{0.25, 0.5, 0.75} {
					sink += quantileOfSorted(q, s)
				}
			}
			_ = sink
		})
		b.Run(fmt.Sprintf("n=%d/select", n), func(b *testing.B) {
			b.ReportAllocs()
			var sink float64
			for b.Loop() {
				o := newOrderStats(slices.Clone(values))
				for _, q := range []float64{0.25, 0.5, 0.75} {
					sink += quantileSorted(q, o)
				}
			}
			_ = sink
		})
	}
}

// FuzzOrderStats: whatever the values (ties, NaN, infinities, adversarial
// orders) and whatever ranks are asked in whatever order, a selection is
// what sorting then indexing gives.
func FuzzOrderStats(f *testing.F) {
	f.Add([]byte{3, 1, 2, 2, 0, 9}, []byte{0, 5, 2})
	f.Add([]byte{7, 7, 7, 7}, []byte{3, 0})
	f.Add([]byte{255, 254, 1, 0, 128, 128, 3}, []byte{6, 1, 4, 4})
	f.Fuzz(func(t *testing.T, raw, ranks []byte) {
		if len(raw) == 0 || len(raw) > 4096 {
			return
		}
		// One byte a value: small ranges make ties; a few bytes stand
		// for NaN and the infinities.
		values := make([]float64, len(raw))
		for i, b := range raw {
			switch b {
			case 250:
				values[i] = math.NaN()
			case 251:
				values[i] = math.Inf(1)
			case 252:
				values[i] = math.Inf(-1)
			default:
				values[i] = float64(b) / 4
			}
		}
		rs := make([]int, 0, len(ranks))
		for _, r := range ranks {
			rs = append(rs, int(r)%len(values))
		}
		requireSelects(t, values, rs)
	})
}
