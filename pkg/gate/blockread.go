package gate

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/storage"

	"github.com/metergate/metergate/pkg/localday"
)

// TimeBlocks is storage that keeps its samples in blocks of time, as the
// embedded TSDB does. Reading a series costs, for every block the read
// touches, a lookup and decoding of the series' labels and chunk
// references there, whatever the number of samples: one read per block is
// about half the cost of consecutive reads that each straddle two blocks
// (docs/exports.md#block-reads-member-runs-order-statistics-sealed-blocks).
type TimeBlocks interface {
	// BlockRanges returns the ranges [lo, hi] (milliseconds, inclusive),
	// ascending, contiguous and without overlap, that cover [mint, maxt]
	// and follow the storage's block boundaries: the first starts at or
	// before mint (math.MinInt64 before the first block), the last ends at
	// or after maxt (math.MaxInt64 when it is open: the in-memory head).
	BlockRanges(mint, maxt int64) [][2]int64
	// Sealed returns an identity of the data in [lo, hi] when it can
	// no longer change (one persisted block that nothing else overlaps),
	// and false otherwise.
	Sealed(lo, hi int64) (id string, ok bool)
}

type slicedReadKey struct{}

// WithSlicedRead returns a context for reading a long range of days slice
// by slice, in increasing order (an export): under it, on storage with
// TimeBlocks, the gate reads the index registers block by block, every
// midnight of a block at once, and keeps the readings of the last few
// blocks for the next slices, so that each block is read once instead of
// once per slice that touches it. Slices may be evaluated concurrently.
// What each query reads is unchanged (TestBlockReadsAgree); memory is a few
// blocks' readings whatever the range.
func WithSlicedRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, slicedReadKey{}, &blockReads{})
}

// keptBlocks is how many blocks' readings a sliced read keeps per register:
// two slices in flight touch at most three blocks between them when blocks
// are longer than slices, and the memory is a few MiB per block for the
// district.
const keptBlocks = 4

// blockReads are the readings of the index registers block by block,
// shared by the slices of one sliced read.
type blockReads struct {
	mu     sync.Mutex
	blocks []*blockRead // most recently used last
}

// blockRead is the reading of one register at every local midnight in one
// block range; done is closed once r or err is set.
type blockRead struct {
	source string
	tol    int64
	lo, hi int64
	done   chan struct{}
	r      *indexRead
	err    error
}

// readIndex is readIndex over the given midnights (increasing, non-empty),
// assembled from whole-block readings. ok is false when the storage has no
// blocks, or the read is narrowed: then readIndex reads as usual.
func (b *blockReads) readIndex(ctx context.Context, q storage.Queryable, sealed *sealedReads, source string, midnights []int64, tol int64) (*indexRead, bool, error) {
	tb, ok := q.(TimeBlocks)
	if !ok || ctx.Value(narrowKey{}) != nil {
		return nil, false, nil
	}
	mint, maxt := midnights[0]-tol+1, midnights[len(midnights)-1]
	ranges := tb.BlockRanges(mint, maxt)
	var out *indexRead
	var rows rowAllocator
	i := 0
	for _, rg := range ranges {
		// The midnights in this block's range. Their windows (M−tol, M]
		// may begin in the range before: the read of a range covers its
		// midnights' windows, whatever the boundaries, so that a boundary
		// costs at worst a touch of the block before, never a reading.
		j := i
		for j < len(midnights) && midnights[j] <= rg[1] {
			j++
		}
		if j == i {
			continue
		}
		// A range open at either end (before the first block, the head)
		// is read as far as this read goes: it is not a block to share.
		if rg[0] == math.MinInt64 {
			rg[0] = mint
		}
		if rg[1] == math.MaxInt64 {
			rg[1] = maxt
		}
		br, err := b.block(ctx, tb, q, sealed, source, tol, rg)
		if err != nil {
			return nil, true, err
		}
		// Where each midnight is in the block's read: usually a run of
		// consecutive days, copied at once; a query with a step of
		// several days picks them one by one.
		pos := make([]int, j-i)
		for k := range pos {
			at, found := slices.BinarySearch(br.r.midnights, midnights[i+k])
			if !found {
				return nil, true, fmt.Errorf("reading %s: midnight %d missing from the block read [%d, %d]", source, midnights[i+k], rg[0], rg[1])
			}
			pos[k] = at
		}
		at, consecutive := pos[0], pos[len(pos)-1]-pos[0] == len(pos)-1
		if out == nil {
			out = &indexRead{midnights: midnights, readings: make(map[string][]float64, len(br.r.readings))}
			rows = rowAllocator{n: len(midnights), rows: len(br.r.readings)}
		}
		for rmp, rd := range br.r.readings {
			var run []float64
			if consecutive {
				run = rd[at : at+j-i]
			} else {
				run = make([]float64, j-i)
				for k, p := range pos {
					run[k] = rd[p]
				}
			}
			if allNaN(run) {
				continue
			}
			r := out.readings[rmp]
			if r == nil {
				r = rows.next()
				out.readings[rmp] = r
			}
			copy(r[i:j], run)
		}
		i = j
	}
	if out == nil {
		out = &indexRead{midnights: midnights, readings: map[string][]float64{}}
	}
	return out, true, nil
}

// block returns the readings of source at every local midnight in range
// rg, reading them once for all slices.
func (b *blockReads) block(ctx context.Context, tb TimeBlocks, q storage.Queryable, sealed *sealedReads, source string, tol int64, rg [2]int64) (*blockRead, error) {
	b.mu.Lock()
	var br *blockRead
	for k, o := range b.blocks {
		if o.source == source && o.tol == tol && o.lo == rg[0] && o.hi == rg[1] {
			br = o
			b.blocks = append(slices.Delete(b.blocks, k, k+1), o)
			break
		}
	}
	if br == nil {
		br = &blockRead{source: source, tol: tol, lo: rg[0], hi: rg[1], done: make(chan struct{})}
		b.blocks = append(b.blocks, br)
		if n := countSource(b.blocks, source); n > keptBlocks {
			for k, o := range b.blocks {
				if o.source == source {
					b.blocks = slices.Delete(b.blocks, k, k+1)
					break
				}
			}
		}
		hint := 0
		for _, o := range b.blocks {
			if o.source != source {
				continue
			}
			select {
			case <-o.done: // r is set before done is closed
				if o.r != nil {
					hint = len(o.r.readings)
				}
			default:
			}
		}
		b.mu.Unlock()
		br.r, br.err = sealed.read(ctx, tb, q, source, rg, tol, hint)
		close(br.done)
		if br.err != nil {
			b.forget(br) // a cancelled or failed read is not kept
		}
	} else {
		b.mu.Unlock()
	}
	select {
	case <-br.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return br, br.err
}

func (b *blockReads) forget(br *blockRead) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k := slices.Index(b.blocks, br); k >= 0 {
		b.blocks = slices.Delete(b.blocks, k, k+1)
	}
}

func countSource(bs []*blockRead, source string) int {
	n := 0
	for _, o := range bs {
		if o.source == source {
			n++
		}
	}
	return n
}

// nextLocalMidnight is the first local midnight at or after t (ms).
func nextLocalMidnight(t int64) int64 {
	d := localday.Of(timestamp.Time(t))
	if m := timestamp.FromTime(d.Start()); m >= t {
		return m
	}
	return timestamp.FromTime(d.End())
}

// localMidnights are the local midnights in [lo, hi] (ms), increasing.
func localMidnights(lo, hi int64) []int64 {
	var out []int64
	m := nextLocalMidnight(lo)
	if m > hi {
		return out
	}
	for d := localday.Of(timestamp.Time(m)); ; d = d.AddDays(1) {
		m := timestamp.FromTime(d.Start())
		if m > hi {
			return out
		}
		out = append(out, m)
	}
}

func allNaN(vs []float64) bool {
	for _, v := range vs {
		if !math.IsNaN(v) {
			return false
		}
	}
	return true
}
