package server

import (
	"net/http"
	"slices"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/perimeterapi"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

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
	out := []perimeterapi.Perimeter{}
	for _, name := range vis.Perimeters {
		p := latestVersion(reg, name)
		if p == nil {
			continue
		}
		info := perimeterapi.Perimeter{Name: p.Name, Description: p.Description, UseCase: string(p.UseCase),
			Audience: string(p.Audience), Flow: p.Flow, GroupBy: slices.Clone(p.GroupBy), Groups: map[string][]string{}}
		if info.GroupBy == nil {
			info.GroupBy = []string{}
		}
		info.Forms = []string{}
		if rule, ok := policy.Lookup(catalogue.Flow(p.Flow), catalogue.Daily, c.Audience); ok {
			for _, f := range rule.Forms {
				if p.Publishes(string(f)) {
					info.Forms = append(info.Forms, string(f))
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
func describe(reg *registry.Registry, p *registry.Perimeter, info *perimeterapi.Perimeter) {
	sel := p.Select
	onlyPlaces := sel.Usage == "" && len(sel.Producers) == 0 && len(sel.Stations) == 0 && sel.CommonAreas == nil &&
		len(sel.PRMs) == 0 && len(sel.Concentrators) == 0
	switch {
	case onlyPlaces && len(sel.Buildings) == 1 && len(sel.Clusters) == 0:
		for i := range reg.Buildings {
			if b := reg.Buildings[i]; b.ID == sel.Buildings[0] {
				info.Building = &perimeterapi.Building{ID: b.ID, Name: b.Name, Kind: b.Kind, Households: b.Households,
					SurfaceM2: b.SurfaceM2, Inhabitants: b.Inhabitants, TargetKWhPerM2Year: b.TargetKWhPerM2Year}
				info.Inhabitants = b.Inhabitants
			}
		}
	case onlyPlaces && len(sel.Buildings) == 0 && (sel.All || len(sel.Clusters) > 0):
		for _, c := range reg.Clusters {
			if sel.All || slices.Contains(sel.Clusters, c.ID) {
				info.Clusters = append(info.Clusters, perimeterapi.Cluster{ID: c.ID, Name: c.Name, Inhabitants: c.Inhabitants})
				info.Inhabitants += c.Inhabitants
			}
		}
	case len(sel.Stations) > 0:
		for _, st := range reg.Stations {
			if slices.Contains(sel.Stations, st.ID) {
				info.Stations = append(info.Stations, perimeterapi.Station{ID: st.ID, Name: st.Name, Operator: st.Operator})
			}
		}
	}
}
