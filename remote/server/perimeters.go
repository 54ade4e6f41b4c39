package server

import (
	"net/http"
	"slices"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// perimeterInfo is one entry of GET /api/v1/perimeters: a perimeter the
// caller may address and the registry's public facts that a dashboard
// needs around it (a building's surface and regulatory target, clusters'
// inhabitants). It never lists meters: who is in a set stays unknown.
type perimeterInfo struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	UseCase     registry.UseCase  `json:"useCase"`
	Audience    registry.Audience `json:"audience"`
	Flow        string            `json:"flow"`
	GroupBy     []string          `json:"groupBy"`
	// Forms the caller may ask of the perimeter's daily data: the policy's
	// for its audience, narrowed by the perimeter's registry forms.
	Forms       []policy.Form       `json:"forms"`
	Groups      map[string][]string `json:"groups,omitempty"`
	Inhabitants int                 `json:"inhabitants,omitempty"`
	Building    *buildingInfo       `json:"building,omitempty"`
	Clusters    []clusterInfo       `json:"clusters,omitempty"`
	Stations    []stationInfo       `json:"stations,omitempty"`
}

type buildingInfo struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	Kind               string  `json:"kind"`
	Households         int     `json:"households"`
	SurfaceM2          float64 `json:"surfaceM2"`
	Inhabitants        int     `json:"inhabitants"`
	TargetKWhPerM2Year float64 `json:"targetKWhPerM2Year,omitempty"`
}

type clusterInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Inhabitants int    `json:"inhabitants"`
}

type stationInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Operator string `json:"operator"`
}

// servePerimeters lists exactly the perimeters gate.Visible lets the caller
// address, so the listing tells nothing a query could not.
func (s *Server) servePerimeters(w http.ResponseWriter, r *http.Request) {
	c := CallerOf(r)
	if c == nil || c.Audience == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
		writeAPIJSON(w, http.StatusUnauthorized, map[string]any{"status": "error", "errorType": "unauthorized", "error": "a valid bearer token with read access is required"})
		return
	}
	reg := s.Registry()
	vis := gate.Visible(reg, c)
	out := []perimeterInfo{}
	for _, name := range vis.Perimeters {
		p := latestVersion(reg, name)
		if p == nil {
			continue
		}
		info := perimeterInfo{Name: p.Name, Description: p.Description, UseCase: p.UseCase, Audience: p.Audience,
			Flow: p.Flow, GroupBy: slices.Clone(p.GroupBy), Groups: map[string][]string{}}
		if info.GroupBy == nil {
			info.GroupBy = []string{}
		}
		info.Forms = []policy.Form{}
		if rule, ok := policy.Lookup(catalogue.Flow(p.Flow), catalogue.Daily, c.Audience); ok {
			for _, f := range rule.Forms {
				if p.Publishes(string(f)) {
					info.Forms = append(info.Forms, f)
				}
			}
		}
		for _, g := range p.GroupBy {
			if vals, ok := vis.GroupValues[g]; ok {
				info.Groups[g] = vals
			}
		}
		describe(reg, p, &info)
		out = append(out, info)
	}
	writeAPIJSON(w, http.StatusOK, map[string]any{"status": "success", "data": out})
}

// latestVersion is the last registered version of a perimeter.
func latestVersion(reg *registry.Registry, name string) *registry.Perimeter {
	var last *registry.Perimeter
	for i := range reg.Perimeters {
		if p := &reg.Perimeters[i]; p.Name == name && (last == nil || !p.ValidFrom.Before(last.ValidFrom)) {
			last = p
		}
	}
	return last
}

// describe adds the facts the registry keeps about what a selector names
// when it names whole clusters, buildings or stations.
func describe(reg *registry.Registry, p *registry.Perimeter, info *perimeterInfo) {
	sel := p.Select
	onlyPlaces := sel.Usage == "" && len(sel.Producers) == 0 && len(sel.Stations) == 0 && sel.CommonAreas == nil &&
		len(sel.PRMs) == 0 && len(sel.Concentrators) == 0
	switch {
	case onlyPlaces && len(sel.Buildings) == 1 && len(sel.Clusters) == 0:
		for i := range reg.Buildings {
			if b := reg.Buildings[i]; b.ID == sel.Buildings[0] {
				info.Building = &buildingInfo{ID: b.ID, Name: b.Name, Kind: b.Kind, Households: b.Households,
					SurfaceM2: b.SurfaceM2, Inhabitants: b.Inhabitants, TargetKWhPerM2Year: b.TargetKWhPerM2Year}
				info.Inhabitants = b.Inhabitants
			}
		}
	case onlyPlaces && len(sel.Buildings) == 0 && (sel.All || len(sel.Clusters) > 0):
		for _, c := range reg.Clusters {
			if sel.All || slices.Contains(sel.Clusters, c.ID) {
				info.Clusters = append(info.Clusters, clusterInfo{ID: c.ID, Name: c.Name, Inhabitants: c.Inhabitants})
				info.Inhabitants += c.Inhabitants
			}
		}
	case len(sel.Stations) > 0:
		for _, st := range reg.Stations {
			if slices.Contains(sel.Stations, st.ID) {
				info.Stations = append(info.Stations, stationInfo{ID: st.ID, Name: st.Name, Operator: st.Operator})
			}
		}
	}
}
