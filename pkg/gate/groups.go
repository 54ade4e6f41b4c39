package gate

import (
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// evalGroup is what every aggregate of one group of contributing RMPs on
// one day is computed from: who contributes (set size and Venn cells), the
// sum and largest value (dominance), and the values in increasing order
// (quartiles), selected by rank as they are asked.
// Under a read cache it is shared by every query that aggregates the same
// perimeter, grouping and register on the same day (an export asks the sum
// and three quartiles of each); each query still applies every check to it.
type evalGroup struct {
	lbls    labels.Labels
	key     string
	meters  []int32 // contributing meters, by position in the snapshot
	sum     float64 // added in the registry's order of members
	largest float64
	// sorted gives the values by rank, in increasing order, without
	// sorting them all (three quartiles need six ranks).
	sorted *orderStats
	// engine, when set, holds the figures the engine computed for this
	// group (Options.Pushdown) in place of meters and sorted.
	engine *pushedGroup

	mu      sync.Mutex
	verdict []cellVerdict // smallCell by partition and threshold
}

type cellVerdict struct {
	cells     *cells
	threshold int
	small     bool
}

// smallCell is smallCell(c, prms, t) for the group's RMPs, remembered per
// partition: the verdict depends only on the group's RMPs, the partition
// and the threshold.
func (g *evalGroup) smallCell(s *snapshot, c *cells, t int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, v := range g.verdict {
		if v.cells == c && v.threshold == t {
			return v.small
		}
	}
	small := smallCellOf(s.cellsOf(c), len(c.names), g.meters, t)
	g.verdict = append(g.verdict, cellVerdict{c, t, small})
	return small
}

// groupsKey says what the groups of a day were computed from.
type groupsKey struct {
	p     *registry.Perimeter // a version of the snapshot's registry
	day   localday.Day
	daily *denseDaily // the read of the index register
	by    string
}

// groups splits the contributing members of perimeter version p on the
// day into the groups of l's by clause, sorted by key.
func (e *dayEval) groups(p *registry.Perimeter, l *leaf) []*evalGroup {
	if e.pushed != nil {
		return e.pushedGroups(l)
	}
	dd := e.daily[l.metric.DerivedFrom]
	gi := e.snap.groups(l.by)
	var key groupsKey
	if e.cache != nil {
		key = groupsKey{p: p, day: e.day, daily: dd, by: joinBy(l.by)}
		e.cache.mu.Lock()
		gs, ok := e.cache.evaluated[key]
		e.cache.mu.Unlock()
		if ok {
			return gs
		}
	}
	vals, has := dd.day(e.day)
	var out []*evalGroup
	if vals != nil {
		members := e.snap.members(p, e.day)
		// Two passes, so that each group's slices are allocated once.
		count := make([]int32, len(gi.keys))
		for _, i := range members {
			if has[i] {
				count[gi.of[i]]++
			}
		}
		byID := make([]*evalGroup, len(gi.keys))
		for _, i := range members {
			if !has[i] {
				continue // registered but not contributing
			}
			v := vals[i]
			id := gi.of[i]
			gr := byID[id]
			if gr == nil {
				gr = &evalGroup{lbls: gi.lbls[id], key: gi.keys[id], meters: make([]int32, 0, count[id]), sorted: newOrderStats(make([]float64, 0, count[id]))}
				byID[id] = gr
				out = append(out, gr)
			}
			gr.meters = append(gr.meters, i)
			gr.sorted.add(v)
			gr.sum += v
			gr.largest = max(gr.largest, v)
		}
	}
	for k, gr := range out {
		// The same RMPs are often a group of several perimeters (a
		// cluster, and the district's group of that cluster): share the
		// values, and so every rank one of them selects.
		if same := e.cache.sameGroup(e.day, dd, gr, false); same != nil {
			out[k] = &evalGroup{lbls: gr.lbls, key: gr.key, meters: same.meters, sum: same.sum, largest: same.largest, sorted: same.sorted}
			continue
		}
		e.cache.sameGroup(e.day, dd, gr, true)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	if e.cache != nil {
		e.cache.mu.Lock()
		e.cache.evaluated[key] = out
		e.cache.mu.Unlock()
	}
	return out
}

func joinBy(by []string) string {
	k := ""
	for _, b := range by {
		k += b + "\xff"
	}
	return k
}

// sameKey finds groups of the same RMPs on the same day of the same read.
type sameKey struct {
	day   localday.Day
	daily *denseDaily
	n     int
	hash  uint64
}

// sameGroup returns a group already computed from exactly gr's meters
// (same day, same read, same meters in the same order: the same sum,
// largest value and values), or nil; with remember, it remembers gr for
// the next. Without a cache it does nothing.
func (c *readCache) sameGroup(d localday.Day, dd *denseDaily, gr *evalGroup, remember bool) *evalGroup {
	if c == nil {
		return nil
	}
	// FNV-1a over the positions, inline: hash.Hash's Write per meter
	// cost more than the rest of the lookup.
	h := uint64(14695981039346656037)
	for _, i := range gr.meters {
		h = (h ^ uint64(uint32(i))) * 1099511628211
	}
	k := sameKey{d, dd, len(gr.meters), h}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.same[k] {
		if slices.Equal(o.meters, gr.meters) {
			return o
		}
	}
	if remember {
		c.same[k] = append(c.same[k], gr)
	}
	return nil
}
