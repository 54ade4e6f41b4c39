package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/registry"
)

// Each row of POLICY.md, restated independently of Table.
func TestPolicyRows(t *testing.T) {
	type row struct {
		flow     catalogue.Flow
		nature   catalogue.Nature
		audience registry.Audience
		min      int
		allowed  []Form
		refused  []Form
	}
	rows := []row{
		{catalogue.Consumption, catalogue.Daily, registry.Public, 101, []Form{Sum, Quartile}, []Form{Individual, Curves}},
		{catalogue.Consumption, catalogue.Daily, registry.Restricted, 11, []Form{Sum, Quartile}, []Form{Individual, Curves}},
		{catalogue.Production, catalogue.Daily, registry.Public, 11, []Form{Sum, Quartile}, []Form{Individual, Curves}},
		{catalogue.Production, catalogue.Daily, registry.Restricted, 11, []Form{Sum, Quartile}, []Form{Individual, Curves}},
		{catalogue.Consumption, catalogue.Curve, registry.Public, 0, nil, []Form{Sum, Quartile, Individual, Curves}},
		{catalogue.Consumption, catalogue.Curve, registry.Restricted, 0, nil, []Form{Sum, Quartile, Individual, Curves}},
		{catalogue.Production, catalogue.Curve, registry.Public, 0, nil, []Form{Sum, Quartile, Individual, Curves}},
		{catalogue.Production, catalogue.Curve, registry.Restricted, 0, nil, []Form{Sum, Quartile, Individual, Curves}},
		{catalogue.Consumption, catalogue.Daily, registry.Consented, 1, []Form{Sum, Quartile, Individual}, []Form{Curves}},
		{catalogue.Consumption, catalogue.Curve, registry.Consented, 1, []Form{Curves}, []Form{Sum, Quartile, Individual}},
		{catalogue.Production, catalogue.Daily, registry.Consented, 1, []Form{Sum, Individual}, []Form{Quartile, Curves}},
		{catalogue.Production, catalogue.Curve, registry.Consented, 1, []Form{Curves}, []Form{Sum, Quartile, Individual}},
	}
	for _, w := range rows {
		t.Run(string(w.flow)+"/"+string(w.nature)+"/"+string(w.audience), func(t *testing.T) {
			r, ok := Lookup(w.flow, w.nature, w.audience)
			assert.True(t, ok)
			if len(w.allowed) > 0 {
				assert.Equal(t, w.min, r.MinSet)
			}
			for _, f := range w.allowed {
				assert.True(t, r.Allows(f), "form %s", f)
			}
			for _, f := range w.refused {
				assert.False(t, r.Allows(f), "form %s", f)
			}
			assert.Equal(t, w.audience == registry.Consented, r.Consent)
		})
	}
	assert.Len(t, Table, len(rows), "every row of the table is tested")
}

func TestNoRowMeansNothing(t *testing.T) {
	_, ok := Lookup(catalogue.Consumption, catalogue.Daily, registry.Operator)
	assert.False(t, ok)
	_, ok = Lookup(catalogue.NoFlow, catalogue.Infrastructure, registry.Public)
	assert.False(t, ok)
	assert.Equal(t, 0, Threshold(catalogue.Consumption, registry.Operator))
	assert.Equal(t, 101, Threshold(catalogue.Consumption, registry.Public))
	assert.Equal(t, 11, Threshold(catalogue.Consumption, registry.Restricted))
	assert.Equal(t, 11, Threshold(catalogue.Production, registry.Public))
}

func TestCollectionNeedsConsent(t *testing.T) {
	want := map[string]bool{
		catalogue.CurveConsumption: true, catalogue.CurveInjection: true, catalogue.CurveEVCharge: true,
		catalogue.IndexConsumption: false, catalogue.IndexInjection: false, catalogue.IndexGeneration: false,
		catalogue.EVSessions: false, catalogue.ConcInstalled: false, catalogue.ConcInfo: false,
	}
	for name, needs := range want {
		m, ok := catalogue.Lookup(name)
		assert.True(t, ok, name)
		assert.Equal(t, needs, CollectionNeedsConsent(m), name)
	}
	assert.False(t, CollectionNeedsConsent(nil))
}

// A perimeter may narrow its forms only to names the policy knows.
func TestPerimeterFormsArePolicyForms(t *testing.T) {
	var forms []string
	for _, f := range []Form{Sum, Quartile, Individual, Curves} {
		forms = append(forms, string(f))
	}
	assert.ElementsMatch(t, forms, registry.PerimeterForms)
}
