package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
)

// rwbench's meter layout (its gen.go): 61 concentrators holding contiguous
// ranges of meters, 30 clusters, and a 14-digit PRM that is a bijection of
// the meter number modulo 10^13.
const (
	rwbenchConcentrators = 61
	rwbenchClusters      = 30
)

// RWBenchPRM is rwbench's PRM of meter m.
func RWBenchPRM(m int) string {
	return fmt.Sprintf("%014d", 20000000000000+(uint64(m)*7777777777777+1234567)%10000000000000)
}

// writeRegistry writes a registry of rwbench's meters, each with a consent
// in force since 2000: metergate refuses load-curve points of meters without
// one (data minimisation), and the benchmark must store every sample. The
// registry has no perimeters: the benchmark reads as the operator only.
// Usage is not derivable without rwbench's value model; ingestion checks
// consent, not the registry's usage, so every meter is "residential" here.
func writeRegistry(dir string, meters int) error {
	granted := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &registry.Registry{}
	for c := 1; c <= rwbenchConcentrators; c++ {
		r.Concentrators = append(r.Concentrators, registry.Concentrator{
			ID: fmt.Sprintf("c%02d", c), Cluster: fmt.Sprintf("k%02d", (c-1)%rwbenchClusters+1), PLC: "G3"})
	}
	for k := 1; k <= rwbenchClusters; k++ {
		r.Clusters = append(r.Clusters, registry.Cluster{ID: fmt.Sprintf("k%02d", k), Name: fmt.Sprintf("cluster %d", k)})
	}
	for m := range meters {
		conc := m*rwbenchConcentrators/meters + 1
		prm := RWBenchPRM(m)
		r.Meters = append(r.Meters, registry.Meter{PRM: prm, Concentrator: fmt.Sprintf("c%02d", conc),
			Cluster: fmt.Sprintf("k%02d", (conc-1)%rwbenchClusters+1), Usage: "residential"})
		r.Consents = append(r.Consents, registry.Consent{PRM: prm, UseCase: registry.UC3, Granted: granted})
	}
	reg, err := registry.New(r)
	if err != nil {
		return fmt.Errorf("building the benchmark registry: %w", err)
	}
	if err := registry.Save(dir, reg); err != nil {
		return fmt.Errorf("saving the benchmark registry: %w", err)
	}
	return nil
}

// writeConfig writes metergate's configuration: everything default except
// one caller, rwbench, that writes and reads as the operator (the
// verification queries are raw PromQL over every meter).
func writeConfig(path, token string) error {
	cfg := map[string]any{
		"registry_dir": "registry",
		"rule_files":   []string{},
		"audit_log":    "audit.log", // relative to the configuration: shared by the runs, never read
		"callers": []map[string]any{{
			"name": "rwbench", "token": token, "write": true, "audience": string(registry.Operator),
		}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding metergate configuration: %w", err)
	}
	// Check it as the server will, so that a mistake shows here and not as
	// a receiver that never becomes ready.
	if _, err := config.Parse(b); err != nil {
		return fmt.Errorf("benchmark configuration: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing metergate configuration: %w", err)
	}
	return nil
}
