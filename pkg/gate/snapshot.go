package gate

import (
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// snapshot is what the gate derives from one registry snapshot once, for
// every query over it: meters by position instead of by PRM, so that the
// per-day work of an aggregate (members, contributors, groups, Venn cells)
// is array indexing rather than string hashing. Everything here is a pure
// function of the snapshot; a reload builds a new one.
type snapshot struct {
	reg   *registry.Registry
	index map[string]int32 // PRM → position in reg.Meters

	mu       sync.Mutex
	matching map[*registry.Perimeter][]int32 // meters a version's selector matches, in registry order
	runs     map[*registry.Perimeter][]*memberRun
	grouping map[string]*grouping // by clause → groups of every meter
	cellIDs  map[*cells][]int32   // partition → cell of every meter, -1 in none
}

// grouping is the group of every meter under one by clause.
type grouping struct {
	of   []int32 // meter → group
	lbls []labels.Labels
	keys []string
}

// snapshotOf returns the gate's snapshot of reg, building it on a reload.
func (g *Gate) snapshotOf(reg *registry.Registry) *snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.snap == nil || g.snap.reg != reg {
		s := &snapshot{reg: reg, index: make(map[string]int32, len(reg.Meters)),
			matching: map[*registry.Perimeter][]int32{}, runs: map[*registry.Perimeter][]*memberRun{}, grouping: map[string]*grouping{}, cellIDs: map[*cells][]int32{}}
		for i := range reg.Meters {
			// registry.New refuses a PRM registered twice; keep the first
			// anyway, as Registry.Meter does not promise otherwise.
			if _, ok := s.index[reg.Meters[i].PRM]; !ok {
				s.index[reg.Meters[i].PRM] = int32(i)
			}
		}
		g.snap = s
	}
	return g.snap
}

// members is reg.Members(p, d) by position: the meters in service on d
// that p's selector matches, in registry order. The slice is shared: do
// not modify it.
func (s *snapshot) members(p *registry.Perimeter, d localday.Day) []int32 {
	if !p.ValidOn(d) {
		return nil
	}
	matches := s.matches(p)
	s.mu.Lock()
	for _, r := range s.runs[p] {
		if r.holds(d) {
			s.mu.Unlock()
			return r.members
		}
	}
	s.mu.Unlock()
	r := &memberRun{members: make([]int32, 0, len(matches))}
	for _, i := range matches {
		m := &s.reg.Meters[i]
		if m.ActiveOn(d) {
			r.members = append(r.members, i)
		}
		r.narrow(d, m.Installed)
		r.narrow(d, m.Removed)
	}
	s.mu.Lock()
	runs := append(s.runs[p], r)
	if len(runs) > keptRuns {
		runs = runs[1:]
	}
	s.runs[p] = runs
	s.mu.Unlock()
	return r.members
}

// memberRun is the members of a perimeter version over the days around
// one on which none of the meters its selector matches is installed or
// removed: the days of an export reuse it instead of testing every meter
// every day.
type memberRun struct {
	from, to localday.Day // from ≤ d < to; zero is open
	members  []int32
}

// keptRuns is how many runs are kept per perimeter version: two slices of
// an export are evaluated at once, a month apart.
const keptRuns = 4

func (r *memberRun) holds(d localday.Day) bool {
	return (r.from.IsZero() || !d.Before(r.from)) && (r.to.IsZero() || d.Before(r.to))
}

// narrow shortens the run around d to exclude the day change on which a
// meter enters or leaves service (Meter.ActiveOn changes there).
func (r *memberRun) narrow(d, change localday.Day) {
	switch {
	case change.IsZero():
	case d.Before(change):
		if r.to.IsZero() || change.Before(r.to) {
			r.to = change
		}
	case r.from.IsZero() || r.from.Before(change):
		r.from = change
	}
}

// matches lists the meters p's selector matches, whatever their dates.
func (s *snapshot) matches(p *registry.Perimeter) []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.matching[p]
	if !ok {
		m = []int32{}
		for i := range s.reg.Meters {
			if p.Select.Match(&s.reg.Meters[i]) {
				m = append(m, int32(i))
			}
		}
		s.matching[p] = m
	}
	return m
}

// groups returns the groups of every meter under the by clause, with the
// labels and keys groupOf gives them.
func (s *snapshot) groups(by []string) *grouping {
	k := strings.Join(by, "\xff")
	s.mu.Lock()
	defer s.mu.Unlock()
	gr, ok := s.grouping[k]
	if ok {
		return gr
	}
	gr = &grouping{of: make([]int32, len(s.reg.Meters))}
	ids := map[string]int32{}
	for i := range s.reg.Meters {
		lbls, key := groupLabelsOf(&s.reg.Meters[i], by)
		id, ok := ids[key]
		if !ok {
			id = int32(len(gr.keys))
			ids[key] = id
			gr.lbls, gr.keys = append(gr.lbls, lbls), append(gr.keys, key)
		}
		gr.of[i] = id
	}
	s.grouping[k] = gr
	return gr
}

// cellsOf returns the cell of every meter in partition c, -1 for a meter
// in no set of it.
func (s *snapshot) cellsOf(c *cells) []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, ok := s.cellIDs[c]
	if !ok {
		ids = make([]int32, len(s.reg.Meters))
		for i := range s.reg.Meters {
			id, in := c.of[s.reg.Meters[i].PRM]
			if !in {
				id = -1
			}
			ids[i] = int32(id)
		}
		s.cellIDs[c] = ids
	}
	return ids
}

// smallCellOf is smallCell for meters by position.
func smallCellOf(cellOf []int32, ncells int, meters []int32, t int) bool {
	count := make([]int, ncells+1) // the last counts meters in no cell
	for _, i := range meters {
		id := cellOf[i]
		if id < 0 {
			id = int32(ncells)
		}
		count[id]++
	}
	for _, n := range count {
		if n > 0 && n < t {
			return true
		}
	}
	return false
}

// denseDaily is the daily energy of every meter of a snapshot on some
// days: v[day][meter], with ok false where the meter contributes nothing
// (as a missing key of dailyValues).
type denseDaily struct {
	at map[localday.Day]int
	v  [][]float64
	ok [][]bool
}

// dense turns an index read into daily energies by meter position. RMPs
// the registry does not know are left out: they are no perimeter's member.
func (s *snapshot) dense(r *indexRead, days []localday.Day) *denseDaily {
	n := len(s.reg.Meters)
	out := &denseDaily{at: make(map[localday.Day]int, len(days)), v: make([][]float64, len(days)), ok: make([][]bool, len(days))}
	spans := make([][2]int, len(days))
	for j, d := range days {
		out.at[d] = j
		out.v[j], out.ok[j] = make([]float64, n), make([]bool, n)
		spans[j][0], spans[j][1] = r.span(d)
	}
	for rmp, rd := range r.readings {
		i, known := s.index[rmp]
		if !known {
			continue
		}
		for j := range days {
			if v, ok := r.energy(rd, spans[j][0], spans[j][1]); ok {
				out.v[j][i], out.ok[j][i] = v, true
			}
		}
	}
	return out
}

// day returns the energies of day d, nil when d was not read.
func (dd *denseDaily) day(d localday.Day) ([]float64, []bool) {
	j, ok := dd.at[d]
	if !ok {
		return nil, nil
	}
	return dd.v[j], dd.ok[j]
}
