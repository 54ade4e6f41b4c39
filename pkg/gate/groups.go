package gate

import (
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// evalGroup is what every aggregate of one group of contributing RMPs on
// one day is computed from: who contributes (set size and Venn cells), the
// sum and largest value (dominance), and the sorted values (quartiles).
// Under a read cache it is shared by every query that aggregates the same
// perimeter, grouping and register on the same day (an export asks the sum
// and three quartiles of each); each query still applies every check to it.
type evalGroup struct {
	lbls    labels.Labels
	key     string
	prms    []string
	sum     float64 // added in the registry's order of members
	largest float64
	sorted  []float64

	mu      sync.Mutex
	verdict []cellVerdict // smallCell by partition and threshold
}

type cellVerdict struct {
	cells     *cells
	threshold int
	small     bool
}

// smallCell is smallCell(c, g.prms, t), remembered per partition: the
// verdict depends only on the group's RMPs, the partition and the threshold.
func (g *evalGroup) smallCell(c *cells, t int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, v := range g.verdict {
		if v.cells == c && v.threshold == t {
			return v.small
		}
	}
	small := smallCell(c, g.prms, t)
	g.verdict = append(g.verdict, cellVerdict{c, t, small})
	return small
}

// groupsKey says what the groups of a day were computed from.
type groupsKey struct {
	p    *registry.Perimeter // a version of the cache's registry snapshot
	day  localday.Day
	read string // the read of the index register (daysKey)
	by   string
}

// groups splits the contributing members of perimeter version p on the
// day into the groups of l's by clause, sorted by key.
func (e *dayEval) groups(p *registry.Perimeter, l *leaf) []*evalGroup {
	var key groupsKey
	if e.cache != nil {
		key = groupsKey{p: p, day: e.day, read: e.reads[l.metric.DerivedFrom], by: strings.Join(l.by, "\xff")}
		e.cache.mu.Lock()
		gs, ok := e.cache.evaluated[key]
		e.cache.mu.Unlock()
		if ok {
			return gs
		}
	}
	vals := e.daily[l.metric.DerivedFrom][e.day]
	byKey := map[string]*evalGroup{}
	var out []*evalGroup
	for _, prm := range members(e.cache, e.reg, p, e.day) {
		v, ok := vals[prm]
		if !ok {
			continue // registered but not contributing
		}
		lbls, k := e.groupOf(prm, l.by)
		gr := byKey[k]
		if gr == nil {
			gr = &evalGroup{lbls: lbls, key: k}
			byKey[k] = gr
			out = append(out, gr)
		}
		gr.prms = append(gr.prms, prm)
		gr.sorted = append(gr.sorted, v)
		gr.sum += v
		gr.largest = max(gr.largest, v)
	}
	for _, gr := range out {
		sort.Float64s(gr.sorted)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	if e.cache != nil {
		e.cache.mu.Lock()
		e.cache.evaluated[key] = out
		e.cache.mu.Unlock()
	}
	return out
}
