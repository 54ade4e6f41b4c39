package registry

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPerimeterForms(t *testing.T) {
	meters := []Meter{{PRM: "00000000000001", Cluster: "k01", Usage: "residential"}}
	perimeter := func(forms ...string) *Registry {
		return &Registry{Meters: meters, Perimeters: []Perimeter{{
			Name: "p", UseCase: UC4, Audience: Public, Flow: "consumption",
			Select: Selector{All: true}, Forms: forms,
		}}}
	}
	r, err := New(perimeter())
	require.NoError(t, err)
	for _, f := range PerimeterForms {
		assert.True(t, r.Perimeters[0].Publishes(f), "no forms: every form the policy allows (%s)", f)
	}
	r, err = New(perimeter("quartile"))
	require.NoError(t, err)
	assert.True(t, r.Perimeters[0].Publishes("quartile"))
	assert.False(t, r.Perimeters[0].Publishes("sum"))

	_, err = New(perimeter("quartile", "max"))
	require.ErrorContains(t, err, `perimeter p: unknown form "max"`)
}
