// Package district simulates the Lyon Confluence district of the seed report:
// its 7,692 Linky meters behind 61 PLC concentrators in 30 clusters, the use
// cases' buildings, producers and charging stations, their consents and the
// perimeters that may be published (Generate), and the readings the grid
// operator's head-end delivers every day (Model, Simulate).
//
// Everything is a pure function of a seed and the day: two runs with the
// same options build the same registry and send the same samples.
package district

import (
	"fmt"
	"slices"
	"time"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// District figures from the seed report (sections 3.4 and 4.2).
const (
	TotalMeters    = 7692 // roll-out objective in La Confluence
	Concentrators  = 61
	Clusters       = 30
	Inhabitants    = 8000 // "Confluence Neighborhood, 8000 habitants"
	Producers      = 18   // low-voltage producers, PV + cogeneration
	RenovatedCount = 6    // "5 to 7 buildings of 25 households"
	RenovatedHomes = 25
	EstateHomes    = 200 // "+ 200 households (building set - cité)"
	NewBuildHomes  = 60
	UC3MaxConsents = 125 // "potentially 125 households maximum"

	// Residential households overall; with about 1.48 people per home they
	// make the seed's 8,000 inhabitants. The rest are business meters.
	households = 5400
)

// Options choose the district to generate.
type Options struct {
	Seed uint64
	// Until is the last local day the simulation covers; the roll-out and
	// the consents are placed relative to it. Zero: yesterday.
	Until localday.Day
	// Installed is the number of meters installed by Until (default all
	// 7,692). Fewer puts Until in the middle of the roll-out, as in the seed
	// report's end of November 2017 (5,255 installed); the others are
	// installed in the following days.
	Installed int
}

func (o *Options) setDefaults() error {
	if o.Until.IsZero() {
		o.Until = localday.Of(time.Now()).AddDays(-1)
	}
	if o.Installed == 0 {
		o.Installed = TotalMeters
	}
	if o.Installed < 0 || o.Installed > TotalMeters {
		return fmt.Errorf("installed meters must be between 1 and %d, not %d", TotalMeters, o.Installed)
	}
	return nil
}

var clusterNames = [Clusters]string{
	"Perrache Sud", "Sainte-Blandine", "Cours Charlemagne", "Place Nautique", "Quai Rambaud",
	"Darse", "Marché Gare", "Denuzière", "Lyon Islands", "Hikari",
	"Les Docks", "Ycone", "La Sucrière", "Quai Perrache", "Champ",
	"Magellan", "Confluent", "Musée", "Pavillons", "Smartseille",
	"Cité Perrache", "Passage Panama", "Saint-Pierre", "Quai Antoine Riboud", "Gare d'eau",
	"Prison Saint-Paul", "Bichat", "Montrochet", "Rue Casimir Périer", "Port Rambaud",
}

// Roles of a meter in the generated district.
const (
	roleHousehold = iota
	roleBusiness
	roleCommon
	roleProducer
	roleStation
)

type slot struct {
	cluster  int
	role     int
	building string
}

// Generate builds the registry of the simulated district.
func Generate(opts Options) (*registry.Registry, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	seed := opts.Seed
	r := &registry.Registry{}
	for k := range Clusters {
		r.Clusters = append(r.Clusters, registry.Cluster{ID: clusterID(k), Name: clusterNames[k]})
	}

	// Use-case buildings, each alone in its cluster so that a cluster minus
	// a building stays a large set (no differencing down to few meters).
	type bdef struct {
		b      registry.Building
		common int
	}
	var defs []bdef
	for i := range RenovatedCount {
		defs = append(defs, bdef{registry.Building{ID: fmt.Sprintf("renov-%d", i+1), Name: fmt.Sprintf("Renovated building %d", i+1),
			Cluster: clusterID(1 + 3*i), Kind: "renovated", Households: RenovatedHomes, SurfaceM2: 1800, Inhabitants: 52}, 1})
	}
	defs = append(defs, bdef{registry.Building{ID: "estate", Name: "Cité Perrache estate", Cluster: clusterID(20), Kind: "estate",
		Households: EstateHomes, SurfaceM2: 13200, Inhabitants: 420}, 3})
	// RT2012's Cep,max is 50 kWhep/m²/year modulated for climate zone H1c
	// (Lyon) and altitude: about 60.
	defs = append(defs, bdef{registry.Building{ID: "new-building", Name: "New building (RT2012)", Cluster: clusterID(23), Kind: "new",
		Households: NewBuildHomes, SurfaceM2: 3900, Inhabitants: 115, TargetKWhPerM2Year: 60}, 2})

	// Cluster sizes: uneven but every cluster keeps at least 101 + margin
	// meters outside its use-case building.
	sizes := make([]int, Clusters)
	weights := make([]float64, Clusters)
	var wsum float64
	for k := range weights {
		weights[k] = 0.65 + 0.7*uniform(seed, streamLayout, uint64(k), 0)
		switch k {
		case 20:
			weights[k] += 0.8 // the estate's cluster
		case 23:
			weights[k] += 0.4 // the new building's cluster
		}
		wsum += weights[k]
	}
	total := 0
	for k := range sizes {
		sizes[k] = int(float64(TotalMeters) * weights[k] / wsum)
		total += sizes[k]
	}
	for k := 0; total < TotalMeters; k = (k + 1) % Clusters {
		sizes[k]++
		total++
	}

	var slots []slot
	used := make([]int, Clusters)
	add := func(k, role int, building string) {
		slots = append(slots, slot{cluster: k, role: role, building: building})
		used[k]++
	}
	for _, d := range defs {
		k := clusterIndex(d.b.Cluster)
		for range d.b.Households {
			add(k, roleHousehold, d.b.ID)
		}
		for range d.common {
			add(k, roleCommon, d.b.ID)
		}
		r.Buildings = append(r.Buildings, d.b)
	}
	for i := range Producers {
		add((i*7+3)%Clusters, roleProducer, "")
	}
	for i := range stationDefs {
		add((i*6+4)%Clusters, roleStation, "")
	}
	// The remaining places: households and businesses, drawn so that some
	// clusters are more business-like (offices and shops of the Confluence).
	var rest []slot
	for k := range Clusters {
		for range sizes[k] - used[k] {
			rest = append(rest, slot{cluster: k})
		}
	}
	if len(rest) != TotalMeters-len(slots) {
		return nil, fmt.Errorf("district layout: %d free places, want %d", len(rest), TotalMeters-len(slots))
	}
	key := func(i int) float64 {
		bias := 0.35 * uniform(seed, streamLayout, uint64(rest[i].cluster), 1)
		return uniform(seed, streamKind, uint64(i), 0) + bias
	}
	order := make([]int, len(rest))
	for i := range order {
		order[i] = i
	}
	keys := make([]float64, len(rest))
	for i := range keys {
		keys[i] = key(i)
	}
	slices.SortFunc(order, func(a, b int) int { return compareFloat(keys[b], keys[a]) })
	homesLeft := households - (len(defs)-2)*RenovatedHomes - EstateHomes - NewBuildHomes
	businesses := len(rest) - homesLeft
	for j, i := range order {
		if j < businesses {
			rest[i].role = roleBusiness
		}
	}
	slots = append(slots, rest...)

	// Meters in roll-out order: concentrator areas one after the other.
	concOf := assignConcentrators(sizes, slots)
	prms := map[string]bool{}
	producerN, stationN := 0, 0
	for i, s := range slots {
		m := registry.Meter{Cluster: clusterID(s.cluster), Building: s.building, Concentrator: concOf[i]}
		for salt := uint64(0); ; salt++ {
			m.PRM = fmt.Sprintf("%014d", hash4(seed, streamPRM, uint64(i), salt)%100_000_000_000_000)
			if !prms[m.PRM] {
				prms[m.PRM] = true
				break
			}
		}
		switch s.role {
		case roleHousehold:
			m.Usage = "residential"
		case roleBusiness:
			m.Usage = "business"
		case roleCommon:
			m.Usage, m.CommonArea = "residential", true
		case roleProducer:
			m.Usage = "business"
			if producerN%9 < 7 { // 14 PV, 4 cogeneration
				m.Producer = "pv"
				m.PeakKW = float64(3 + int(uniform(seed, streamScale, uint64(i), 7)*34)) // LV: up to 36 kVA
				if producerN%3 == 0 {
					m.Usage = "residential" // PV on a housing block's roof
				}
			} else {
				m.Producer = "cogeneration"
				m.PeakKW = float64(12 + int(uniform(seed, streamScale, uint64(i), 7)*24))
			}
			producerN++
		case roleStation:
			m.Usage = "business"
			m.EVStation = stationDefs[stationN].ID
			stationN++
		}
		r.Meters = append(r.Meters, m)
	}
	for _, s := range stationDefs {
		r.Stations = append(r.Stations, s)
	}
	placeRollout(seed, opts, r)
	concentrators(seed, r)
	inhabitants(r)
	consents(seed, opts.Until, r)
	r.Perimeters = perimeters(r)
	reg, err := registry.New(r)
	if err != nil {
		return nil, fmt.Errorf("generated district is inconsistent: %w", err)
	}
	return reg, nil
}

var stationDefs = []registry.Station{
	{ID: "cnr-confluence", Name: "CNR charging station, quai Rambaud", Operator: "cnr"},
	{ID: "bluely-charlemagne", Name: "Bluely station, cours Charlemagne", Operator: "bluely"},
	{ID: "bluely-musee", Name: "Bluely station, Musée des Confluences", Operator: "bluely"},
	{ID: "bluely-nautique", Name: "Bluely station, place Nautique", Operator: "bluely"},
	{ID: "navya-shuttle", Name: "Navya autonomous shuttle depot", Operator: "navya"},
}

func clusterID(k int) string { return fmt.Sprintf("k%02d", k+1) }

func clusterIndex(id string) int {
	var k int
	fmt.Sscanf(id, "k%02d", &k)
	return k - 1
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// assignConcentrators gives each cluster two concentrators (the largest
// cluster three: 61 in all) and splits the cluster's meters between them.
func assignConcentrators(sizes []int, slots []slot) []string {
	largest := 0
	for k, n := range sizes {
		if n > sizes[largest] {
			largest = k
		}
	}
	first := make([]int, Clusters) // number of the cluster's first concentrator
	count := make([]int, Clusters)
	n := 0
	for k := range Clusters {
		first[k] = n + 1
		count[k] = 2
		if k == largest {
			count[k] = 3
		}
		n += count[k]
	}
	seen := make([]int, Clusters)
	out := make([]string, len(slots))
	for i, s := range slots {
		k := s.cluster
		c := first[k] + seen[k]*count[k]/sizes[k]
		seen[k]++
		out[i] = fmt.Sprintf("c%02d", c)
	}
	return out
}

// placeRollout dates the meters' installation on the seed's roll-out shape:
// 90 % over four months of massive roll-out, 10 % over four months of
// saturation. With every meter installed the dates are the real ones (July
// 2017 to February 2018); otherwise the shape is moved so that exactly
// opts.Installed meters are in place on opts.Until.
func placeRollout(seed uint64, opts Options, r *registry.Registry) {
	n := len(r.Meters)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	// Concentrator by concentrator, in a shuffled order of areas.
	concRank := func(c string) uint64 {
		return hash4(seed, streamInstall, 0, uint64(len(c))+uint64(c[1])*31+uint64(c[2]))
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := concRank(r.Meters[a].Concentrator), concRank(r.Meters[b].Concentrator)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	})
	offset := func(rank int) int { // days since the roll-out started
		massive := 0.9 * float64(n)
		if float64(rank) < massive {
			return int(122 * float64(rank) / massive)
		}
		return 122 + int(120*(float64(rank)-massive)/(float64(n)-massive))
	}
	start := localday.Day{Year: 2017, Month: time.July, Day: 3}
	if opts.Installed < n {
		start = opts.Until.AddDays(-offset(opts.Installed - 1))
	}
	for rank, i := range order {
		d := start.AddDays(offset(rank))
		if rank >= opts.Installed && !d.After(opts.Until) {
			d = opts.Until.AddDays(1)
		}
		r.Meters[i].Installed = d
	}
}

func concentrators(seed uint64, r *registry.Registry) {
	first := map[string]localday.Day{}
	cluster := map[string]string{}
	for _, m := range r.Meters {
		if d, ok := first[m.Concentrator]; !ok || m.Installed.Before(d) {
			first[m.Concentrator] = m.Installed
		}
		cluster[m.Concentrator] = m.Cluster
	}
	for i := 1; i <= Concentrators; i++ {
		id := fmt.Sprintf("c%02d", i)
		plc := "G3"
		if uniform(seed, streamLayout, uint64(i), 9) < 0.4 { // older G1 concentrators remain
			plc = "G1"
		}
		// Concentrators go in one to six months before their meters.
		lead := 30 + int(150*uniform(seed, streamLayout, uint64(i), 10))
		r.Concentrators = append(r.Concentrators, registry.Concentrator{ID: id, Cluster: cluster[id], PLC: plc, Installed: first[id].AddDays(-lead)})
	}
}

// inhabitants spreads the district's 8,000 inhabitants over the clusters in
// proportion to their households.
func inhabitants(r *registry.Registry) {
	homes := make([]int, Clusters)
	total := 0
	for _, m := range r.Meters {
		if m.Usage == "residential" && !m.CommonArea && m.Producer == "" {
			homes[clusterIndex(m.Cluster)]++
			total++
		}
	}
	left := Inhabitants
	for k := range r.Clusters {
		n := Inhabitants * homes[k] / total
		if k == len(r.Clusters)-1 {
			n = left
		}
		r.Clusters[k].Inhabitants = n
		left -= n
	}
}
