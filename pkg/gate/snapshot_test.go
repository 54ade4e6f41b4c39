package gate

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// The snapshot's by-position views are the registry's own answers: the
// members of every perimeter version on every day (in and out of its
// validity, meters installed and removed), every meter's group under every
// grouping, and the Venn-cell verdict of every group of every partition.
func TestSnapshotAgreesWithRegistry(t *testing.T) {
	d := gatetest.Build(t)
	// Meters installed and removed within the days, and perimeter
	// versions that end and begin.
	r := *d.Registry
	r.Meters = slices.Clone(r.Meters)
	for i := range r.Meters {
		switch {
		case i%7 == 0:
			r.Meters[i].Installed = d.Days[2]
		case i%11 == 0:
			r.Meters[i].Removed = d.Days[len(d.Days)-3]
		}
	}
	r.Perimeters = slices.Clone(r.Perimeters)
	for i := range r.Perimeters {
		if i%2 == 0 {
			r.Perimeters[i].ValidTo = d.Days[4]
		} else {
			r.Perimeters[i].ValidFrom = d.Days[1]
		}
	}
	reg, err := registry.New(&r)
	require.NoError(t, err)
	g := &Gate{}
	s := g.snapshotOf(reg)
	require.Same(t, s, g.snapshotOf(reg), "one snapshot per registry")
	days := append(slices.Clone(d.Days), d.Days[0].AddDays(-400), d.Days[len(d.Days)-1].AddDays(400))
	checked := 0
	for i := range reg.Perimeters {
		p := &reg.Perimeters[i]
		for _, day := range days {
			var got []string
			for _, m := range s.members(p, day) {
				got = append(got, reg.Meters[m].PRM)
			}
			require.Equal(t, reg.Members(p, day), got, "%s on %s", p.Name, day)
			checked += len(got)
		}
		for _, by := range [][]string{nil, p.GroupBy, {catalogue.LabelCluster}} {
			gi := s.groups(by)
			e := &dayEval{reg: reg}
			for m := range reg.Meters {
				lbls, key := e.groupOf(reg.Meters[m].PRM, by)
				require.Equal(t, key, gi.keys[gi.of[m]])
				require.Equal(t, lbls, gi.lbls[gi.of[m]])
			}
		}
	}
	require.Greater(t, checked, 1000)

	// Every day around the installs and removals, forwards, backwards and
	// shuffled: the runs of members reused from one day to the next never
	// outlive a change.
	var every []localday.Day
	for day := d.Days[0].AddDays(-3); !day.After(d.Days[len(d.Days)-1].AddDays(3)); day = day.AddDays(1) {
		every = append(every, day)
	}
	backwards := slices.Clone(every)
	slices.Reverse(backwards)
	shuffled := slices.Clone(every)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, order := range [][]localday.Day{every, backwards, shuffled} {
		s := (&Gate{}).snapshotOf(reg)
		for _, day := range order {
			for i := range reg.Perimeters {
				p := &reg.Perimeters[i]
				var got []string
				for _, m := range s.members(p, day) {
					got = append(got, reg.Meters[m].PRM)
				}
				require.Equal(t, reg.Members(p, day), got, "%s on %s", p.Name, day)
			}
		}
	}

	// Cells: groups of contributing members whose verdicts differ.
	for _, a := range []registry.Audience{registry.Public, registry.Restricted} {
		for _, form := range []policy.Form{policy.Sum, policy.Quartile} {
			f := family{a, catalogue.Consumption, form}
			for _, day := range d.Days {
				c := g.cells(reg, f, day)
				small := 0
				for i := range reg.Perimeters {
					members := s.members(&reg.Perimeters[i], day)
					for _, cut := range []int{len(members), len(members) - 20, len(members) / 2, 7, 1} {
						if cut < 0 || cut > len(members) {
							continue
						}
						sub := members[:cut]
						var prms []string
						for _, m := range sub {
							prms = append(prms, reg.Meters[m].PRM)
						}
						want := smallCell(c, prms, f.threshold())
						require.Equal(t, want, smallCellOf(s.cellsOf(c), len(c.names), sub, f.threshold()))
						if want {
							small++
						}
					}
				}
				require.Positive(t, small, "some verdicts are small cells")
			}
		}
	}
}
