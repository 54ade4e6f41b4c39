package gate

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
)

// Visibility is what a reading caller may learn of the registry and the
// catalogue through the metadata endpoints (labels, label values,
// metadata): exactly the names the planner would let it address, so a
// listing tells nothing a query could not, and never who is in a set.
type Visibility struct {
	// Perimeters the caller may address, sorted.
	Perimeters []string
	// Metrics the caller may query, sorted.
	Metrics []string
	// Labels of answers and selectors: __name__, perimeter, rmp (consented
	// only) and the grouping labels of its perimeters, sorted.
	Labels []string
	// GroupValues are the values of each grouping label (e.g. cluster ids)
	// over the meters of the perimeters that allow it.
	GroupValues map[string][]string
}

// Visible computes the visibility of caller c on registry reg with the
// planner's own rules. Operators and callers without a reading audience
// get nothing: the operator's listings come from the raw storage.
func Visible(reg *registry.Registry, c *config.Caller) Visibility {
	v := Visibility{GroupValues: map[string][]string{}}
	if reg == nil || c == nil {
		return v
	}
	switch c.Audience {
	case registry.Public, registry.Restricted, registry.Consented:
	default:
		return v
	}
	p := &planner{reg: reg, caller: c, consented: c.Audience == registry.Consented}
	flows := map[string]bool{}
	groups := map[string]map[string]bool{}
	for _, name := range reg.PerimeterNames() {
		versions := p.versions(name)
		ok := len(versions) > 0
		for _, pv := range versions {
			ok = ok && visible(pv, c)
		}
		if !ok {
			continue
		}
		v.Perimeters = append(v.Perimeters, name)
		for _, pv := range versions {
			flows[pv.Flow] = true
		}
		if p.consented {
			continue // consented answers carry only __name__ and rmp
		}
		// A label is groupable only if every version allows it, as the
		// planner checks.
		for _, l := range versions[0].GroupBy {
			all := true
			for _, pv := range versions[1:] {
				all = all && slices.Contains(pv.GroupBy, l)
			}
			if !all || l == catalogue.LabelRMP || l == labels.MetricName {
				continue
			}
			if groups[l] == nil {
				groups[l] = map[string]bool{}
			}
			for _, pv := range versions {
				for i := range reg.Meters {
					if m := &reg.Meters[i]; pv.Select.Match(m) {
						if val := meterLabel(m, l); val != "" {
							groups[l][val] = true
						}
					}
				}
			}
		}
	}
	for i := range catalogue.All {
		m, _, err := metricRule(catalogue.All[i].Name, c.Audience)
		if err == nil && flows[string(m.Flow)] {
			v.Metrics = append(v.Metrics, m.Name)
		}
	}
	slices.Sort(v.Metrics)
	v.Labels = []string{labels.MetricName, LabelPerimeter}
	if p.consented {
		v.Labels = append(v.Labels, catalogue.LabelRMP)
	}
	for l, vals := range groups {
		v.Labels = append(v.Labels, l)
		for val := range vals {
			v.GroupValues[l] = append(v.GroupValues[l], val)
		}
		slices.Sort(v.GroupValues[l])
	}
	slices.Sort(v.Labels)
	return v
}
