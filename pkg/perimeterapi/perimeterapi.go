// Package perimeterapi is the wire format of GET /api/v1/perimeters, shared
// by the server that writes it and the Grafana plugin's client that reads
// it: a perimeter a caller may address and the registry's public facts a
// dashboard needs around it. It never carries meters: who is in a set
// stays unknown.
package perimeterapi

// Path is where the server lists perimeters.
const Path = "/api/v1/perimeters"

// Perimeter is one registered perimeter the caller's audience may address.
type Perimeter struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	UseCase     string `json:"useCase"`
	Audience    string `json:"audience"`
	Flow        string `json:"flow"`
	// GroupBy are the labels its figures may be grouped by; Groups their
	// values the caller may see.
	GroupBy []string            `json:"groupBy"`
	Groups  map[string][]string `json:"groups,omitempty"`
	// Forms the caller may ask of the perimeter's daily data: the policy's
	// for its audience, narrowed by the perimeter's registry forms.
	Forms []string `json:"forms"`
	// Inhabitants of the perimeter when the registry knows them (whole
	// clusters, buildings); 0 when it does not.
	Inhabitants int       `json:"inhabitants,omitempty"`
	Building    *Building `json:"building,omitempty"`
	Clusters    []Cluster `json:"clusters,omitempty"`
	Stations    []Station `json:"stations,omitempty"`
}

// Building is a use-case building.
type Building struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	Kind               string  `json:"kind"`
	Households         int     `json:"households"`
	SurfaceM2          float64 `json:"surfaceM2"`
	Inhabitants        int     `json:"inhabitants"`
	TargetKWhPerM2Year float64 `json:"targetKWhPerM2Year,omitempty"`
}

// Cluster is one of the district's clusters.
type Cluster struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Inhabitants int    `json:"inhabitants"`
}

// Station is an EV charging station.
type Station struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Operator string `json:"operator"`
}
