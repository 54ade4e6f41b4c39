package gatetest

import (
	"testing"

	"github.com/metergate/metergate/pkg/registry"
)

// West is the quartile-only perimeter of FormsRegistry: k01 and k02
// without k02's last 20 meters.
func (d *District) West() []string {
	k02 := d.Clusters["k02"]
	return append(append([]string{}, d.Clusters["k01"]...), k02[:len(k02)-20]...)
}

// FormsPerimeters are Perimeters with forms narrowed: confluence and
// cluster-k01 publish sums only, and "west" (West) quartiles only, which
// the gate accepts because the two forms have separate partitions.
func (d *District) FormsPerimeters() []registry.Perimeter {
	var ps []registry.Perimeter
	for _, p := range Perimeters() {
		if p.Name == "confluence" || p.Name == "cluster-k01" {
			p.Forms = []string{"sum"}
		}
		ps = append(ps, p)
	}
	return append(ps, registry.Perimeter{Name: "west", UseCase: registry.UC4, Audience: registry.Public,
		Flow: "consumption", Select: registry.Selector{PRMs: d.West()}, Forms: []string{"quartile"}})
}

// WithPerimeters is the district's registry with its perimeters replaced.
func (d *District) WithPerimeters(t testing.TB, ps []registry.Perimeter) *registry.Registry {
	t.Helper()
	r := *d.Registry
	r.Perimeters = ps
	reg, err := registry.New(&r)
	if err != nil {
		t.Fatalf("building registry: %v", err)
	}
	return reg
}
