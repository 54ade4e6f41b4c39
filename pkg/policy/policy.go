// Package policy is POLICY.md's tables as data: for each flow, nature and
// audience, the smallest set of RMPs a published figure may come from and the
// forms it may take. The privacy gate reads its thresholds and allowed forms
// from here and nowhere else, so a privacy officer can check this one table
// against the seed report (section 4.3).
package policy

import (
	"slices"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/registry"
)

// Form is a shape of published figure.
type Form string

const (
	Sum        Form = "sum"        // sum over the set
	Quartile   Form = "quartile"   // Q1, median or Q3 of the set
	Individual Form = "individual" // one RMP's own daily values
	Curves     Form = "curves"     // synchronous individual load curves of the complete set
)

// Rule is one row of the policy.
type Rule struct {
	Flow     catalogue.Flow
	Nature   catalogue.Nature
	Audience registry.Audience
	// MinSet is the smallest number of distinct contributing RMPs of one
	// published point; 1 means any set size (consented data).
	MinSet int
	// Forms that may be published; none means nothing may be.
	Forms []Form
	// RoundUpKWh: quartiles are published rounded up to whole kWh.
	RoundUpKWh bool
	// Consent: every RMP of the set consented for the use case over the
	// whole period published.
	Consent bool
}

// Allows reports whether the rule lets form be published.
func (r Rule) Allows(f Form) bool { return slices.Contains(r.Forms, f) }

const (
	cons = catalogue.Consumption
	prod = catalogue.Production
)

// Table is the policy, row by row in POLICY.md's order. Audiences absent
// for a flow and nature publish nothing.
var Table = []Rule{
	// Without consent.
	{Flow: cons, Nature: catalogue.Daily, Audience: registry.Public, MinSet: 101, Forms: []Form{Sum, Quartile}, RoundUpKWh: true},
	{Flow: cons, Nature: catalogue.Daily, Audience: registry.Restricted, MinSet: 11, Forms: []Form{Sum, Quartile}, RoundUpKWh: true},
	{Flow: prod, Nature: catalogue.Daily, Audience: registry.Public, MinSet: 11, Forms: []Form{Sum, Quartile}, RoundUpKWh: true},
	{Flow: prod, Nature: catalogue.Daily, Audience: registry.Restricted, MinSet: 11, Forms: []Form{Sum, Quartile}, RoundUpKWh: true},
	{Flow: cons, Nature: catalogue.Curve, Audience: registry.Public},
	{Flow: cons, Nature: catalogue.Curve, Audience: registry.Restricted},
	{Flow: prod, Nature: catalogue.Curve, Audience: registry.Public},
	{Flow: prod, Nature: catalogue.Curve, Audience: registry.Restricted},
	// With consent.
	{Flow: cons, Nature: catalogue.Daily, Audience: registry.Consented, MinSet: 1, Forms: []Form{Sum, Quartile, Individual}, Consent: true},
	{Flow: cons, Nature: catalogue.Curve, Audience: registry.Consented, MinSet: 1, Forms: []Form{Curves}, Consent: true},
	{Flow: prod, Nature: catalogue.Daily, Audience: registry.Consented, MinSet: 1, Forms: []Form{Sum, Individual}, Consent: true},
	{Flow: prod, Nature: catalogue.Curve, Audience: registry.Consented, MinSet: 1, Forms: []Form{Curves}, Consent: true},
}

// Lookup returns the row for a flow, nature and audience. No row means
// nothing may be published: callers must refuse.
func Lookup(f catalogue.Flow, n catalogue.Nature, a registry.Audience) (Rule, bool) {
	for _, r := range Table {
		if r.Flow == f && r.Nature == n && r.Audience == a {
			return r, true
		}
	}
	return Rule{}, false
}

// Threshold is the minimum set size of daily data of flow f for audience a,
// or 0 when that audience may publish no aggregate of it.
func Threshold(f catalogue.Flow, a registry.Audience) int {
	r, ok := Lookup(f, catalogue.Daily, a)
	if !ok || len(r.Forms) == 0 {
		return 0
	}
	return r.MinSet
}

// CollectionNeedsConsent reports whether collecting a metric's points needs
// the holder's consent: load curves do (an RMP's curve may only be collected
// while some consent is in force); daily indexes and concentrator state do not.
func CollectionNeedsConsent(m *catalogue.Metric) bool {
	return m != nil && m.Subject == catalogue.Meter && m.Nature == catalogue.Curve
}

// Quartiles are the only quantiles publishable without consent.
var Quartiles = []float64{0.25, 0.5, 0.75}

// DefaultDominance is the share of a sum above which one RMP dominates it:
// metergate's addition to the policy (see docs/gate.md).
const DefaultDominance = 0.85
