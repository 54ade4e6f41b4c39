package gate

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// The rule against differencing (issue 3, part 5), and why it works.
//
// Fix one audience, one flow and one day. Let S_1..S_k be the sets of RMPs
// that audience may address that day: each registered perimeter visible to
// it, and each group of a perimeter's group_by labels. They induce a
// partition of the district into cells (Venn cells): two RMPs are in the
// same cell when every S_i contains both or neither. Every S_i is a union of
// cells. The rule: every cell holds 0 or at least t RMPs (t the audience's
// threshold for the flow), among registered members at registration time
// (CheckPartition) and among contributing RMPs at query time (a point is
// suppressed otherwise).
//
// Claim: no combination of published sums of that day isolates a set of
// fewer than t RMPs. Proof: a published sum is Σ_{c ⊆ S_i} T_c where T_c is
// the total of cell c's contributing RMPs, so every published figure, and
// every function of several of them (differences included), depends on the
// data only through the vector (T_c). Swapping values between two RMPs of
// one cell, or moving energy between them, changes no T_c, hence no
// published figure: nothing finer than a cell total can be learnt. A cell
// total comes from 0 contributors (nothing to learn) or at least t of them,
// which is exactly the protection a single published sum over t RMPs has.
// Quartiles are not linear but are computed over one S_i as well; a change
// inside one cell that keeps the multiset of the set's values keeps them.
// Days are separate figures (a daily value belongs to one day), and
// audiences nest (restricted sees all public perimeters, with a finer
// partition that passes the same check), so the argument holds per audience.
// TestPartitionProof checks the claim on the cells of the test registry.

// family is the collection of sets one audience may publish one form of
// aggregate over, for one flow. Sums and quartiles have a partition each:
// a perimeter that publishes both (the default) is in both, so for
// registries without quartile-only or sum-only perimeters the two are the
// same partition. Keeping them apart is what lets a quartile-only perimeter
// (the households of a cluster) overlap a sum perimeter (the whole cluster):
// no sum is ever published over it, so no linear combination of sums can
// isolate the difference (the cluster's businesses), and quartiles of two
// sets are only published when that difference is 0 or at least t RMPs too
// (quartile cells), since Q(A) and Q(A∪B) say where B's values lie.
type family struct {
	audience registry.Audience
	flow     catalogue.Flow
	form     policy.Form // Sum or Quartile
}

// families are the ones with thresholds; consented data needs no cells.
var families = []family{
	{registry.Public, catalogue.Consumption, policy.Sum}, {registry.Public, catalogue.Production, policy.Sum},
	{registry.Restricted, catalogue.Consumption, policy.Sum}, {registry.Restricted, catalogue.Production, policy.Sum},
	{registry.Public, catalogue.Consumption, policy.Quartile}, {registry.Public, catalogue.Production, policy.Quartile},
	{registry.Restricted, catalogue.Consumption, policy.Quartile}, {registry.Restricted, catalogue.Production, policy.Quartile},
}

// has reports whether perimeter p publishes the family's form and is
// addressable by some caller of the family's audience (all use cases: the
// union is the finest partition, so checking it covers every caller).
func (f family) has(p *registry.Perimeter) bool {
	if p.Flow != string(f.flow) || !p.Publishes(string(f.form)) {
		return false
	}
	switch f.audience {
	case registry.Public:
		return p.Audience == registry.Public
	case registry.Restricted:
		return p.Audience == registry.Public || p.Audience == registry.Restricted
	}
	return false
}

func (f family) threshold() int { return policy.Threshold(f.flow, f.audience) }

// meterLabel is the value of a perimeter-level label for a meter, from the
// registry (never from series labels).
func meterLabel(m *registry.Meter, label string) string {
	switch label {
	case catalogue.LabelCluster:
		return m.Cluster
	case catalogue.LabelConcentrator:
		return m.Concentrator
	case catalogue.LabelUsage:
		return m.Usage
	case catalogue.LabelKind:
		return m.Producer
	case catalogue.LabelStation:
		return m.EVStation
	case "building":
		return m.Building
	}
	return ""
}

// groupKey is the group of meter m under labels, e.g. "cluster=k01".
func groupKey(m *registry.Meter, by []string) string {
	var b strings.Builder
	for i, l := range by {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
		b.WriteByte('=')
		b.WriteString(meterLabel(m, l))
	}
	return b.String()
}

// cells is the Venn partition of a family's sets over the registered
// meters, ignoring whether each meter is in service: callers count only
// members in service (or contributors) per cell.
type cells struct {
	of    map[string]int // PRM → cell id; absent: in no set of the family
	names []string       // cell id → description, "in {a, b/cluster=k01}"
}

// partition computes the cells of family f among the perimeter versions
// valid on day d.
func partition(r *registry.Registry, f family, d localday.Day) *cells {
	var sets []string
	sig := map[string][]int{}
	for i := range r.Perimeters {
		p := &r.Perimeters[i]
		if !f.has(p) || !p.ValidOn(d) {
			continue
		}
		whole := len(sets)
		sets = append(sets, p.Name)
		groups := map[string]int{}
		for j := range r.Meters {
			m := &r.Meters[j]
			if !p.Select.Match(m) {
				continue
			}
			sig[m.PRM] = append(sig[m.PRM], whole)
			if len(p.GroupBy) == 0 {
				continue
			}
			k := groupKey(m, p.GroupBy)
			g, ok := groups[k]
			if !ok {
				g = len(sets)
				groups[k] = g
				sets = append(sets, p.Name+"{"+k+"}")
			}
			sig[m.PRM] = append(sig[m.PRM], g)
		}
	}
	c := &cells{of: make(map[string]int, len(sig))}
	ids := map[string]int{}
	prms := make([]string, 0, len(sig))
	for prm := range sig {
		prms = append(prms, prm)
	}
	sort.Strings(prms) // stable cell ids and names
	for _, prm := range prms {
		s := sig[prm]
		var key strings.Builder
		for _, i := range s {
			fmt.Fprintf(&key, "%d,", i)
		}
		id, ok := ids[key.String()]
		if !ok {
			id = len(c.names)
			ids[key.String()] = id
			names := make([]string, len(s))
			for j, i := range s {
				names[j] = sets[i]
			}
			c.names = append(c.names, "in {"+strings.Join(names, ", ")+"} and no other perimeter")
		}
		c.of[prm] = id
	}
	return c
}

// CheckPartition is the registration check against differencing: for each
// audience with a threshold, each flow and each day, every Venn cell of the
// perimeters (and perimeter groups) that audience may address holds 0 or at
// least the threshold of RMPs in service. The server calls it when the
// registry is loaded or reloaded and refuses a registry it rejects; the
// error names the offending cells. It also rejects group_by labels that
// would publish per-RMP output.
func CheckPartition(r *registry.Registry) error {
	var errs []error
	for i := range r.Perimeters {
		p := &r.Perimeters[i]
		for _, l := range p.GroupBy {
			if !groupable[l] {
				errs = append(errs, fmt.Errorf("perimeter %s: group_by %q is not a perimeter-level label (allowed: building, cluster, concentrator, kind, station, usage)", p.Name, l))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Perimeter versions change only on their validity bounds: between two
	// bounds the cells are fixed and only meters entering or leaving
	// service change the counts.
	var bounds []localday.Day
	for _, p := range r.Perimeters {
		for _, d := range []localday.Day{p.ValidFrom, p.ValidTo} {
			if !d.IsZero() {
				bounds = append(bounds, d)
			}
		}
	}
	earliest := localday.Day{Year: 2000, Month: 1, Day: 1}
	for _, m := range r.Meters {
		if !m.Installed.IsZero() && m.Installed.Before(earliest) {
			earliest = m.Installed
		}
	}
	for _, b := range bounds {
		if b.Before(earliest) {
			earliest = b
		}
	}
	bounds = append(bounds, earliest.AddDays(-1))
	sort.Slice(bounds, func(i, j int) bool { return bounds[i].Before(bounds[j]) })
	bounds = slices.Compact(bounds)

	for si, start := range bounds {
		var end localday.Day // exclusive; zero: open
		if si+1 < len(bounds) {
			end = bounds[si+1]
		}
		for _, f := range families {
			c := partition(r, f, start)
			errs = append(errs, checkSegment(r, f, c, start, end)...)
			if len(errs) >= 10 {
				return fmt.Errorf("registry refused: perimeters would allow differencing:\n%w", errors.Join(errs...))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("registry refused: perimeters would allow differencing:\n%w", errors.Join(errs...))
	}
	return nil
}

// groupable are the perimeter-level labels a perimeter may group by.
var groupable = map[string]bool{
	catalogue.LabelCluster: true, catalogue.LabelConcentrator: true, catalogue.LabelUsage: true,
	catalogue.LabelKind: true, catalogue.LabelStation: true, "building": true,
}

// checkSegment sweeps the days [start, end) of one cell partition: each
// cell's count of meters in service changes only when a meter of it is
// installed or removed.
func checkSegment(r *registry.Registry, f family, c *cells, start, end localday.Day) []error {
	t := f.threshold()
	type event struct {
		day   localday.Day
		delta int
	}
	count := make([]int, len(c.names))
	events := make([][]event, len(c.names))
	inSegment := func(d localday.Day) bool {
		return start.Before(d) && (end.IsZero() || d.Before(end))
	}
	for i := range r.Meters {
		m := &r.Meters[i]
		id, ok := c.of[m.PRM]
		if !ok {
			continue
		}
		if m.ActiveOn(start) {
			count[id]++
		}
		if !m.Installed.IsZero() && inSegment(m.Installed) {
			events[id] = append(events[id], event{m.Installed, +1})
		}
		if !m.Removed.IsZero() && inSegment(m.Removed) {
			events[id] = append(events[id], event{m.Removed, -1})
		}
	}
	var errs []error
	for id, n := range count {
		bad := func(d localday.Day, n int) {
			errs = append(errs, fmt.Errorf("on %s, for the %s audience (%s, %s), the cell %s holds %d RMPs, fewer than %d",
				d, f.audience, f.flow, f.form, c.names[id], n, t))
		}
		if n > 0 && n < t {
			bad(start, n)
			continue
		}
		ev := events[id]
		sort.Slice(ev, func(i, j int) bool { return ev[i].day.Before(ev[j].day) })
		for i := 0; i < len(ev); {
			d := ev[i].day
			for ; i < len(ev) && ev[i].day == d; i++ {
				n += ev[i].delta
			}
			if n > 0 && n < t {
				bad(d, n)
				break
			}
		}
	}
	return errs
}
