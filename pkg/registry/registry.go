// Package registry is the authoritative description of the district: its
// meters, concentrators, clusters, buildings, charging stations, the named
// perimeters that may be published, and the consent records of RMP holders.
//
// It is read from a directory of CSV files and one YAML file (see
// docs/registry.md). A Registry is an immutable snapshot: reloading builds a
// new one, so a reader never sees a half-updated district. Everything that
// changes over time (installation, removal, perimeter versions, consents) is
// dated, so membership and consent are known for any day.
package registry

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/metergate/metergate/pkg/localday"
)

// UseCase identifies one of the seed report's five use cases.
type UseCase string

const (
	UC1 UseCase = "uc1" // new building against its regulatory target
	UC2 UseCase = "uc2" // renovated buildings
	UC3 UseCase = "uc3" // individual households
	UC4 UseCase = "uc4" // neighbourhood (WWF One Planet)
	UC5 UseCase = "uc5" // electric mobility
)

// UseCases lists the use cases in order.
var UseCases = []UseCase{UC1, UC2, UC3, UC4, UC5}

// Valid reports whether u is one of the five use cases.
func (u UseCase) Valid() bool { return slices.Contains(UseCases, u) }

// Audience of a published figure, as POLICY.md names them.
type Audience string

const (
	Public     Audience = "public"
	Restricted Audience = "restricted"
	Consented  Audience = "consented"
	Operator   Audience = "operator"
)

// Meter is one RMP: a Linky meter identified by its 14-digit PRM.
type Meter struct {
	PRM          string
	Concentrator string
	Building     string // empty for meters outside registered buildings
	Cluster      string
	Usage        string // residential | business
	Producer     string // "" | pv | cogeneration
	PeakKW       float64
	EVStation    string // station id when the meter supplies a charging station
	CommonArea   bool   // common-area meter of a building (lifts, lighting)
	Installed    localday.Day
	Removed      localday.Day // zero: still in service
}

// ActiveOn reports whether the meter is installed and in service on day d.
func (m *Meter) ActiveOn(d localday.Day) bool {
	if !m.Installed.IsZero() && d.Before(m.Installed) {
		return false
	}
	return m.Removed.IsZero() || d.Before(m.Removed)
}

// Concentrator is a PLC data concentrator in a substation.
type Concentrator struct {
	ID        string
	Cluster   string
	PLC       string // G1 | G3
	Installed localday.Day
}

// Cluster is one of the district's 30 clusters of buildings.
type Cluster struct {
	ID          string
	Name        string
	Inhabitants int
}

// Building is a building of the use cases (new, renovated, estate).
type Building struct {
	ID          string
	Name        string
	Cluster     string
	Kind        string // new | renovated | estate | existing
	Households  int
	SurfaceM2   float64
	Inhabitants int
	// TargetKWhPerM2Year is the regulatory consumption cap (RT2012 for new buildings).
	TargetKWhPerM2Year float64
}

// Station is an EV charging station.
type Station struct {
	ID       string
	Name     string
	Operator string // cnr | bluely | navya
}

// Consent is one holder's consent for one use case.
type Consent struct {
	PRM     string
	UseCase UseCase
	Granted time.Time
	Revoked time.Time // zero: not revoked
}

// Covers reports whether the consent, judged at now, allows sharing data
// stamped in [from, to]. A revoked consent covers nothing any more, not even
// data from before the revocation: revocation stops all sharing at once.
func (c *Consent) Covers(from, to, now time.Time) bool {
	if !c.Revoked.IsZero() && !now.Before(c.Revoked) {
		return false
	}
	return !from.Before(c.Granted) && !to.Before(from)
}

// Collects reports whether the grid operator may collect a load curve point
// stamped t under this consent: granted at or before t and not revoked by t.
func (c *Consent) Collects(t time.Time) bool {
	if t.Before(c.Granted) {
		return false
	}
	return c.Revoked.IsZero() || t.Before(c.Revoked)
}

// Selector chooses meters. Every non-empty field must match (AND); a list
// matches any of its values (OR). An empty selector matches nothing, so a
// perimeter can never mean "everyone" by mistake; use All for the district.
type Selector struct {
	All           bool     `yaml:"all,omitempty"`
	Clusters      []string `yaml:"clusters,omitempty"`
	Buildings     []string `yaml:"buildings,omitempty"`
	Usage         string   `yaml:"usage,omitempty"`
	Producers     []string `yaml:"producers,omitempty"` // pv, cogeneration
	Stations      []string `yaml:"stations,omitempty"`
	CommonAreas   *bool    `yaml:"common_areas,omitempty"`
	PRMs          []string `yaml:"prms,omitempty"`
	Concentrators []string `yaml:"concentrators,omitempty"`
}

func (s *Selector) empty() bool {
	return !s.All && len(s.Clusters) == 0 && len(s.Buildings) == 0 && s.Usage == "" &&
		len(s.Producers) == 0 && len(s.Stations) == 0 && s.CommonAreas == nil && len(s.PRMs) == 0 &&
		len(s.Concentrators) == 0
}

// Match reports whether m is chosen by s.
func (s *Selector) Match(m *Meter) bool {
	if s.empty() {
		return false
	}
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	return in(s.Clusters, m.Cluster) && in(s.Buildings, m.Building) && (s.Usage == "" || s.Usage == m.Usage) &&
		in(s.Producers, m.Producer) && (len(s.Producers) == 0 || m.Producer != "") &&
		in(s.Stations, m.EVStation) && (len(s.Stations) == 0 || m.EVStation != "") &&
		(s.CommonAreas == nil || *s.CommonAreas == m.CommonArea) &&
		in(s.PRMs, m.PRM) && in(s.Concentrators, m.Concentrator)
}

// Perimeter is a named set of RMPs that may be published, over a period.
// Several versions of one perimeter (same name) may follow each other in time.
type Perimeter struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description,omitempty"`
	UseCase     UseCase      `yaml:"use_case"`
	Audience    Audience     `yaml:"audience"`
	Flow        string       `yaml:"flow"` // consumption | production
	ValidFrom   localday.Day `yaml:"valid_from,omitempty"`
	ValidTo     localday.Day `yaml:"valid_to,omitempty"` // exclusive; zero: open
	Select      Selector     `yaml:"select"`
	// Labels are the perimeter-level labels its figures may be grouped by
	// (for example cluster for the neighbourhood's 30 clusters).
	GroupBy []string `yaml:"group_by,omitempty"`
	// Forms narrows what may be published about this perimeter to some of
	// the forms the policy allows its audience (sum, quartile, individual,
	// curves); empty: every form the policy allows. A quartile-only
	// perimeter (households of a cluster, say) may then overlap sum
	// perimeters without its sum ever differencing them (docs/gate.md).
	Forms []string `yaml:"forms,omitempty"`
}

// PerimeterForms are the names a perimeter's forms may take (policy.Form's
// values; the policy package imports this one).
var PerimeterForms = []string{"sum", "quartile", "individual", "curves"}

// Publishes reports whether this version of the perimeter may publish form:
// the policy decides whether its audience may, this narrows it further.
func (p *Perimeter) Publishes(form string) bool {
	return len(p.Forms) == 0 || slices.Contains(p.Forms, form)
}

// ValidOn reports whether this version of the perimeter applies on day d.
func (p *Perimeter) ValidOn(d localday.Day) bool {
	if !p.ValidFrom.IsZero() && d.Before(p.ValidFrom) {
		return false
	}
	return p.ValidTo.IsZero() || d.Before(p.ValidTo)
}

// Registry is an immutable snapshot of the district.
type Registry struct {
	Meters        []Meter // sorted by PRM
	Concentrators []Concentrator
	Clusters      []Cluster
	Buildings     []Building
	Stations      []Station
	Perimeters    []Perimeter
	Consents      []Consent

	meterByPRM    map[string]int
	consentsByPRM map[string][]int
}

// New indexes a registry built in memory and checks its consistency.
func New(r *Registry) (*Registry, error) {
	sort.Slice(r.Meters, func(i, j int) bool { return r.Meters[i].PRM < r.Meters[j].PRM })
	r.meterByPRM = make(map[string]int, len(r.Meters))
	for i, m := range r.Meters {
		if _, dup := r.meterByPRM[m.PRM]; dup {
			return nil, fmt.Errorf("meter %s is registered twice", m.PRM)
		}
		r.meterByPRM[m.PRM] = i
	}
	r.consentsByPRM = make(map[string][]int)
	for i, c := range r.Consents {
		if _, ok := r.meterByPRM[c.PRM]; !ok {
			return nil, fmt.Errorf("consent %d names unregistered meter %s", i+1, c.PRM)
		}
		if !c.UseCase.Valid() {
			return nil, fmt.Errorf("consent of %s names unknown use case %q", c.PRM, c.UseCase)
		}
		r.consentsByPRM[c.PRM] = append(r.consentsByPRM[c.PRM], i)
	}
	for i, p := range r.Perimeters {
		if p.Name == "" {
			return nil, fmt.Errorf("perimeter %d has no name", i+1)
		}
		if !p.UseCase.Valid() {
			return nil, fmt.Errorf("perimeter %s: unknown use case %q", p.Name, p.UseCase)
		}
		switch p.Audience {
		case Public, Restricted, Consented:
		default:
			return nil, fmt.Errorf("perimeter %s: audience must be public, restricted or consented, not %q", p.Name, p.Audience)
		}
		switch p.Flow {
		case "consumption", "production":
		default:
			return nil, fmt.Errorf("perimeter %s: flow must be consumption or production, not %q", p.Name, p.Flow)
		}
		if p.Select.empty() {
			return nil, fmt.Errorf("perimeter %s selects nothing (use all: true for the whole district)", p.Name)
		}
		for _, f := range p.Forms {
			if !slices.Contains(PerimeterForms, f) {
				return nil, fmt.Errorf("perimeter %s: unknown form %q (allowed: %s)", p.Name, f, strings.Join(PerimeterForms, ", "))
			}
		}
	}
	return r, nil
}

// Meter returns the meter with this PRM.
func (r *Registry) Meter(prm string) (*Meter, bool) {
	i, ok := r.meterByPRM[prm]
	if !ok {
		return nil, false
	}
	return &r.Meters[i], true
}

// Perimeter returns the version of the named perimeter that applies on day d.
func (r *Registry) Perimeter(name string, d localday.Day) (*Perimeter, bool) {
	for i := range r.Perimeters {
		if p := &r.Perimeters[i]; p.Name == name && p.ValidOn(d) {
			return p, true
		}
	}
	return nil, false
}

// PerimeterNames lists the distinct perimeter names, sorted.
func (r *Registry) PerimeterNames() []string {
	var names []string
	for _, p := range r.Perimeters {
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	return names
}

// Members returns the PRMs of the perimeter on day d, sorted: the meters
// its selector chooses that are in service that day. Registered members are
// an upper bound of a published set; the gate counts who contributed.
func (r *Registry) Members(p *Perimeter, d localday.Day) []string {
	if !p.ValidOn(d) {
		return nil
	}
	var out []string
	for i := range r.Meters {
		if m := &r.Meters[i]; m.ActiveOn(d) && p.Select.Match(m) {
			out = append(out, m.PRM)
		}
	}
	return out
}

// ConsentCovers reports whether prm's holder consented to use case uc for
// all of [from, to], judged at now.
func (r *Registry) ConsentCovers(prm string, uc UseCase, from, to, now time.Time) bool {
	for _, i := range r.consentsByPRM[prm] {
		if c := &r.Consents[i]; c.UseCase == uc && c.Covers(from, to, now) {
			return true
		}
	}
	return false
}

// CurveCollectable reports whether a load curve point of prm stamped t may be
// collected: some consent of the holder, for any use case, is in force at t.
func (r *Registry) CurveCollectable(prm string, t time.Time) bool {
	for _, i := range r.consentsByPRM[prm] {
		if r.Consents[i].Collects(t) {
			return true
		}
	}
	return false
}
