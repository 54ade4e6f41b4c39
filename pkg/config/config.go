// Package config reads the server's configuration file (YAML): listeners,
// storage, the registry location and the callers it knows.
package config

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/registry"
)

// Config is the whole server configuration.
type Config struct {
	Listen      string   `yaml:"listen"`
	DataDir     string   `yaml:"data_dir"`
	RegistryDir string   `yaml:"registry_dir"`
	RuleFiles   []string `yaml:"rule_files"`
	AuditLog    string   `yaml:"audit_log"`
	Storage     Storage  `yaml:"storage"`
	Query       Query    `yaml:"query"`
	Write       Write    `yaml:"write"`
	Callers     []Caller `yaml:"callers"`
	// Anonymous, when set, is the audience of requests without a token.
	// Only "public" is allowed; empty means every read needs a token.
	Anonymous registry.Audience `yaml:"anonymous"`

	dir string // directory of the file, to resolve relative paths
}

// Storage configures the embedded TSDB.
type Storage struct {
	Retention        model.Duration `yaml:"retention"`
	OutOfOrderWindow model.Duration `yaml:"out_of_order_window"`
}

// Query configures the PromQL engine.
type Query struct {
	Timeout       model.Duration `yaml:"timeout"`
	MaxSamples    int            `yaml:"max_samples"`
	LookbackDelta model.Duration `yaml:"lookback_delta"`
}

// Write configures remote-write ingestion.
type Write struct {
	// MaxBodyBytes bounds a request's compressed body; larger gets 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Caller is one identity that may call the server, with its bearer token.
// A sender writes; a reader reads with an audience; one caller may do both.
type Caller struct {
	Name     string             `yaml:"name"`
	Token    string             `yaml:"token"`
	Write    bool               `yaml:"write"`
	Audience registry.Audience  `yaml:"audience"`  // empty: cannot read
	UseCases []registry.UseCase `yaml:"use_cases"` // for the consented audience
}

// Defaults are the values of everything the file leaves out.
func Defaults() Config {
	return Config{
		Listen:      "127.0.0.1:9464",
		DataDir:     "data",
		RegistryDir: "registry",
		RuleFiles:   []string{"rules/*.yml"},
		AuditLog:    "audit.log",
		Storage: Storage{
			Retention: model.Duration(5 * 365 * 24 * time.Hour),
			// Linky data of day D arrives during D+1 and retries may take days.
			OutOfOrderWindow: model.Duration(7 * 24 * time.Hour),
		},
		Query: Query{
			Timeout:       model.Duration(2 * time.Minute),
			MaxSamples:    50_000_000,
			LookbackDelta: model.Duration(5 * time.Minute),
		},
		Write: Write{MaxBodyBytes: 32 << 20},
	}
}

// Load reads and checks a configuration file. Relative paths in it are
// resolved against the file's directory.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	return c, nil
}

// Parse reads a configuration from YAML bytes; unknown keys are errors.
func Parse(b []byte) (*Config, error) {
	c := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parsing configuration: %w", err)
	}
	return &c, c.Validate()
}

// Validate checks the configuration's consistency.
func (c *Config) Validate() error {
	if c.Storage.OutOfOrderWindow < 0 || c.Storage.Retention <= 0 {
		return errors.New("storage: retention must be positive and out_of_order_window not negative")
	}
	if c.Anonymous != "" && c.Anonymous != registry.Public {
		return fmt.Errorf("anonymous may only be public, not %q", c.Anonymous)
	}
	names := map[string]bool{}
	tokens := map[string]bool{}
	for i, cl := range c.Callers {
		if cl.Name == "" {
			return fmt.Errorf("caller %d has no name", i+1)
		}
		if names[cl.Name] {
			return fmt.Errorf("caller %s is defined twice", cl.Name)
		}
		names[cl.Name] = true
		if len(cl.Token) < 16 {
			return fmt.Errorf("caller %s: token must have at least 16 characters", cl.Name)
		}
		if tokens[cl.Token] {
			return fmt.Errorf("caller %s: token already given to another caller", cl.Name)
		}
		tokens[cl.Token] = true
		switch cl.Audience {
		case "", registry.Public, registry.Restricted, registry.Operator:
			if len(cl.UseCases) > 0 && cl.Audience != registry.Restricted {
				return fmt.Errorf("caller %s: use_cases apply to the restricted and consented audiences only", cl.Name)
			}
		case registry.Consented:
			if len(cl.UseCases) == 0 {
				return fmt.Errorf("caller %s: the consented audience needs use_cases", cl.Name)
			}
		default:
			return fmt.Errorf("caller %s: unknown audience %q", cl.Name, cl.Audience)
		}
		for _, uc := range cl.UseCases {
			if !uc.Valid() {
				return fmt.Errorf("caller %s: unknown use case %q", cl.Name, uc)
			}
		}
		if !cl.Write && cl.Audience == "" {
			return fmt.Errorf("caller %s can neither write nor read", cl.Name)
		}
	}
	return nil
}

// Path resolves a path of the configuration against the file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Identify returns the caller whose token is token. Every configured token
// is compared in constant time, so the time taken does not tell which
// prefix matched.
func (c *Config) Identify(token string) (*Caller, bool) {
	var found *Caller
	for i := range c.Callers {
		if subtle.ConstantTimeCompare([]byte(c.Callers[i].Token), []byte(token)) == 1 {
			found = &c.Callers[i]
		}
	}
	return found, found != nil && token != ""
}
