package district

import (
	"time"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// consents records who agreed to what, relative to the last simulated day:
// a first cohort a year before, a second cohort that joins during the last
// ninety days (so the demo shows curves starting mid-window), and a few
// revocations in the last month.
//
//   - UC3: up to 125 households of the renovated buildings (118 here).
//   - UC2: about 60 % of renovated households, 40 % of the estate's, and the
//     building owners for every common-area meter of those buildings.
//   - UC1: the new building's owner for its common areas.
//   - UC4: two thirds of the producers (curves need consent; daily does not).
//   - UC5: every charging station.
func consents(seed uint64, until localday.Day, r *registry.Registry) {
	kind := map[string]string{}
	for _, b := range r.Buildings {
		kind[b.ID] = b.Kind
	}
	at := func(daysBefore int, i int) time.Time {
		// during office hours of that day
		h := 9 + int(9*uniform(seed, streamConsent, uint64(i), 99))
		return until.AddDays(-daysBefore).Start().Add(time.Duration(h) * time.Hour)
	}
	uc3 := 0
	producers := 0
	for i, m := range r.Meters {
		u := uniform(seed, streamConsent, uint64(i), 0)
		cohort := 365
		if uniform(seed, streamConsent, uint64(i), 1) < 0.25 {
			cohort = 45
		}
		var revoked time.Time
		if uniform(seed, streamConsent, uint64(i), 2) < 0.04 {
			revoked = at(20, i+1)
		}
		add := func(uc registry.UseCase, granted, rev time.Time) {
			r.Consents = append(r.Consents, registry.Consent{PRM: m.PRM, UseCase: uc, Granted: granted, Revoked: rev})
		}
		switch k := kind[m.Building]; {
		case m.CommonArea && (k == "renovated" || k == "estate"):
			add(registry.UC2, at(400, i), time.Time{})
		case m.CommonArea && k == "new":
			add(registry.UC1, at(400, i), time.Time{})
		case k == "renovated":
			if u < 0.6 {
				add(registry.UC2, at(cohort, i), revoked)
			}
			if uniform(seed, streamConsent, uint64(i), 3) < 0.8 && uc3 < 118 {
				var rev time.Time
				if uniform(seed, streamConsent, uint64(i), 4) < 0.05 {
					rev = at(30, i+2)
				}
				add(registry.UC3, at(cohort, i+3), rev)
				uc3++
			}
		case k == "estate":
			if u < 0.4 {
				add(registry.UC2, at(cohort, i), revoked)
			}
		case m.Producer != "":
			if producers%3 != 2 {
				add(registry.UC4, at(500, i), time.Time{})
			}
			producers++
		case m.EVStation != "":
			add(registry.UC5, at(500, i), time.Time{})
		}
	}
}

// perimeters are the sets the platform may publish. Every use-case building
// sits alone in its cluster and every cluster keeps more than 101 meters
// outside it, so no difference of two perimeters isolates a small group.
//
// Publication starts the day after the last meter of the roll-out is
// installed: while the roll-out runs, clusters grow from a handful of
// meters, and a set of 20 is no set the policy can publish.
func perimeters(r *registry.Registry) []registry.Perimeter {
	var from localday.Day
	for _, m := range r.Meters {
		if m.Installed.After(from) {
			from = m.Installed
		}
	}
	if !from.IsZero() {
		from = from.AddDays(1)
	}
	// The district and its clusters publish sums (residential and business
	// together); the households publish quartiles. They overlap, so each
	// keeps to one form: the sum of a cluster's households next to the
	// cluster's would isolate its businesses (28 to 137 meters, fewer than
	// 101), and so would quartiles of both (docs/gate.md, forms).
	sums, quartiles := []string{"sum"}, []string{"quartile"}
	ps := []registry.Perimeter{{
		Name: "confluence", Description: "Whole Confluence district, residential and business (WWF One Planet dashboard)",
		UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
		Select: registry.Selector{All: true}, GroupBy: []string{"cluster"}, Forms: sums,
	}}
	residential := map[string]int{}
	for _, m := range r.Meters {
		if m.Usage == "residential" {
			residential[m.Cluster]++
		}
	}
	for _, c := range r.Clusters {
		ps = append(ps, registry.Perimeter{
			Name: "cluster-" + c.ID, Description: "Cluster " + c.Name,
			UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
			Select: registry.Selector{Clusters: []string{c.ID}}, Forms: sums,
		})
		// A cluster with fewer households than the public threshold gets
		// no households perimeter: the gate would refuse the registry (a
		// Venn cell under 101), and its quartiles could never be shown.
		if residential[c.ID] >= policy.Threshold(catalogue.Consumption, registry.Public) {
			ps = append(ps, registry.Perimeter{
				Name: "households-" + c.ID, Description: "Residential meters of cluster " + c.Name + ": quartiles",
				UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption",
				Select: registry.Selector{Clusters: []string{c.ID}, Usage: "residential"}, Forms: quartiles,
			})
		}
	}
	ps = append(ps, registry.Perimeter{
		Name: "producers", Description: "The 18 low-voltage producers (PV and cogeneration): injection",
		UseCase: registry.UC4, Audience: registry.Public, Flow: "production",
		Select: registry.Selector{Producers: []string{"pv", "cogeneration"}},
	})
	for _, b := range r.Buildings {
		p := registry.Perimeter{
			Name: "building-" + b.ID, Description: b.Name + ": households and common areas",
			UseCase: registry.UC2, Audience: registry.Restricted, Flow: "consumption",
			Select: registry.Selector{Buildings: []string{b.ID}},
		}
		if b.Kind == "new" {
			p.UseCase = registry.UC1
			p.Description = b.Name + ": consumption against its RT2012 target"
		}
		ps = append(ps, p)
	}
	// The consented views of the renovated buildings: their households for
	// UC2 (load curves) and UC3 (individual days), and their common areas.
	// Only meters whose holders consented are ever read through them.
	households, commons := false, true
	for _, b := range r.Buildings {
		if b.Kind != "renovated" && b.Kind != "estate" {
			continue
		}
		in := func(common *bool) registry.Selector {
			return registry.Selector{Buildings: []string{b.ID}, CommonAreas: common}
		}
		ps = append(ps,
			registry.Perimeter{Name: "uc2-" + b.ID, Description: b.Name + ": consenting households (UC2)",
				UseCase: registry.UC2, Audience: registry.Consented, Flow: "consumption", Select: in(&households)},
			registry.Perimeter{Name: "uc2-common-" + b.ID, Description: b.Name + ": common areas whose owner consented (UC2)",
				UseCase: registry.UC2, Audience: registry.Consented, Flow: "consumption", Select: in(&commons)},
			registry.Perimeter{Name: "uc3-" + b.ID, Description: b.Name + ": consenting households, individual days (UC3)",
				UseCase: registry.UC3, Audience: registry.Consented, Flow: "consumption", Select: in(&households)},
		)
	}
	var stations []string
	for _, s := range r.Stations {
		stations = append(stations, s.ID)
	}
	ps = append(ps, registry.Perimeter{
		Name: "ev-stations", Description: "Public electric mobility: CNR, Bluely and Navya stations",
		UseCase: registry.UC5, Audience: registry.Consented, Flow: "consumption",
		Select: registry.Selector{Stations: stations},
	})
	for i := range ps {
		ps[i].ValidFrom = from
	}
	return ps
}
