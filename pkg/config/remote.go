package config

import (
	"fmt"

	"github.com/prometheus/common/model"
)

// Storage engines.
const (
	EngineEmbedded = "embedded" // the Prometheus TSDB in data_dir
	EngineRemote   = "remote"   // an existing engine, see docs/scaling.md
)

// Who evaluates the gate's aggregates over a remote engine.
const (
	// EvaluateEngine: the engine computes daily energies, set sizes, cell
	// counts, sums, maxima and quartiles through its query API (default).
	EvaluateEngine = "engine"
	// EvaluateGate: the gate reads raw samples (read_protocol) and
	// computes them itself.
	EvaluateGate = "gate"
)

// RemoteStorage says where the engine is when storage.engine is remote.
// The kinds, URLs and tenants are documented in docs/scaling.md;
// pkg/enginestore checks them.
type RemoteStorage struct {
	// Kind: victoriametrics, prometheus, mimir or thanos.
	Kind     string `yaml:"kind"`
	WriteURL string `yaml:"write_url"`
	// ReadURL is the base of the engine's Prometheus API (before /api/v1).
	ReadURL string `yaml:"read_url"`
	// ReadProtocol overrides the kind's: export, remote_read or query_api.
	ReadProtocol string            `yaml:"read_protocol,omitempty"`
	Tenant       string            `yaml:"tenant,omitempty"`
	Headers      map[string]string `yaml:"headers,omitempty"`
	Timeout      model.Duration    `yaml:"timeout,omitempty"`
	// QueueDir holds the batches acknowledged and not yet confirmed by
	// the engine (relative to the configuration file).
	QueueDir      string         `yaml:"queue_dir"`
	QueueMaxBytes int64          `yaml:"queue_max_bytes,omitempty"`
	Concurrency   int            `yaml:"concurrency,omitempty"`
	MinBackoff    model.Duration `yaml:"min_backoff,omitempty"`
	MaxBackoff    model.Duration `yaml:"max_backoff,omitempty"`

	// Evaluate is engine (default) or gate: see EvaluateEngine.
	Evaluate string `yaml:"evaluate,omitempty"`
}

func (s *Storage) validateEngine() error {
	switch s.Engine {
	case "", EngineEmbedded:
		return nil
	case EngineRemote:
	default:
		return fmt.Errorf("storage: engine must be embedded or remote, not %q", s.Engine)
	}
	r := s.Remote
	if r.Kind == "" || r.WriteURL == "" || r.ReadURL == "" {
		return fmt.Errorf("storage: a remote engine needs remote.kind, remote.write_url and remote.read_url")
	}
	switch r.Evaluate {
	case "", EvaluateEngine, EvaluateGate:
	default:
		return fmt.Errorf("storage: remote.evaluate must be engine or gate, not %q", r.Evaluate)
	}
	if r.QueueMaxBytes < 0 || r.Concurrency < 0 || r.Timeout < 0 || r.MinBackoff < 0 || r.MaxBackoff < 0 {
		return fmt.Errorf("storage: remote limits must not be negative")
	}
	return nil
}
