package gate

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/storage"
)

// DefaultSealedReadBytes is the memory the gate gives by default to the
// index readings of sealed blocks: a year of the district's two registers
// is about 40 MiB.
const DefaultSealedReadBytes = 64 << 20

// sealedReads remembers, from one export to the next, the readings of an
// index register at every midnight of a storage block that can no longer
// change (TimeBlocks.Sealed: a persisted block that neither another block
// nor the heads overlap). Reading a block costs the TSDB's label and chunk
// lookups for every series, whatever the number of samples; a platform
// that fetches a year every day would pay them again for blocks that have
// not changed since. Entries are keyed by the block's identity, so a
// compaction or retention that replaces the block leaves them unused until
// they are evicted; the least recently used go first past max bytes.
//
// What is remembered is raw readings: every query is still planned,
// checked, thresholded and audited, and consent is judged, on each export.
type sealedReads struct {
	mu      sync.Mutex
	max     int64
	size    int64
	lru     *list.List // of *sealedEntry, most recently used first
	entries map[sealedKey]*list.Element

	hits, misses, unsealed atomic.Uint64 // block reads, by what the memory had to say
}

// SealedReadStats says how the reads of storage blocks went: from memory
// (hits), sealed but read from storage (misses), not sealed (unsealed),
// and the memory the kept readings take.
type SealedReadStats struct {
	Hits, Misses, Unsealed uint64
	Bytes                  int64
}

// SealedReads returns the statistics of the readings of sealed blocks the
// gate keeps between exports (zero when it keeps none).
func (g *Gate) SealedReads() SealedReadStats {
	s := g.sealed
	if s == nil {
		return SealedReadStats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return SealedReadStats{Hits: s.hits.Load(), Misses: s.misses.Load(), Unsealed: s.unsealed.Load(), Bytes: s.size}
}

type sealedKey struct {
	id, source string
	tol        int64
	lo, hi     int64
}

type sealedEntry struct {
	key  sealedKey
	r    *indexRead
	size int64
}

func newSealedReads(max int64) *sealedReads {
	return &sealedReads{max: max, lru: list.New(), entries: map[sealedKey]*list.Element{}}
}

// read returns the readings of source at every local midnight in rg,
// remembered when the range is sealed before and after the read. A nil
// receiver reads without remembering.
func (s *sealedReads) read(ctx context.Context, tb TimeBlocks, q storage.Queryable, source string, rg [2]int64, tol int64, hint int) (*indexRead, error) {
	midnights := localMidnights(rg[0], rg[1])
	if s == nil {
		return readIndexAt(ctx, q, source, midnights, tol, hint)
	}
	id, sealed := tb.Sealed(rg[0], rg[1])
	k := sealedKey{id: id, source: source, tol: tol, lo: rg[0], hi: rg[1]}
	if sealed {
		if r := s.get(k); r != nil {
			s.hits.Add(1)
			return r, nil
		}
		s.misses.Add(1)
	} else {
		s.unsealed.Add(1)
	}
	r, err := readIndexAt(ctx, q, source, midnights, tol, hint)
	if err != nil {
		return nil, err
	}
	// A sample that landed in the range during the read (the
	// out-of-order head grew over it) may or may not be in r: keep r
	// only if the range is still sealed, under the same identity.
	if sealed {
		if again, ok := tb.Sealed(rg[0], rg[1]); ok && again == id {
			s.put(k, r)
		}
	}
	return r, nil
}

func (s *sealedReads) get(k sealedKey) *indexRead {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	if !ok {
		return nil
	}
	s.lru.MoveToFront(e)
	return e.Value.(*sealedEntry).r
}

func (s *sealedReads) put(k sealedKey, r *indexRead) {
	size := readSize(r)
	if size > s.max {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[k]; ok {
		return
	}
	s.entries[k] = s.lru.PushFront(&sealedEntry{key: k, r: r, size: size})
	s.size += size
	for s.size > s.max {
		last := s.lru.Back()
		e := last.Value.(*sealedEntry)
		s.lru.Remove(last)
		delete(s.entries, e.key)
		s.size -= e.size
	}
}

// readSize estimates the memory of a read: the readings, the PRM strings
// (copied out of the label sets by readIndexAt) and the map's own slots.
func readSize(r *indexRead) int64 {
	const perRMP = 16 + 16 + 24 + 16 // string header, its 14 bytes' allocation, slice header, map slot
	return int64(len(r.midnights))*8 + int64(len(r.readings))*(perRMP+int64(len(r.midnights))*8)
}
