// Package config reads the server's configuration file (YAML): listeners,
// storage, the registry location and the callers it knows.
package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
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
	// RegistryCheckInterval, when positive, makes the server look at most
	// this often (on the next use of the registry) whether the registry
	// files changed, and reload them: servers sharing a registry directory
	// see a revoked consent without a SIGHUP. 0: SIGHUP only.
	RegistryCheckInterval model.Duration `yaml:"registry_check_interval,omitempty"`
	Storage               Storage        `yaml:"storage"`
	Query                 Query          `yaml:"query"`
	Write                 Write          `yaml:"write"`
	HTTP                  HTTP           `yaml:"http"`
	Callers               []Caller       `yaml:"callers"`
	// Anonymous, when set, is the audience of requests without a token.
	// Only "public" is allowed; empty means every read needs a token.
	Anonymous registry.Audience `yaml:"anonymous"`

	dir    string // directory of the file, to resolve relative paths
	source string // the file itself, read again on reload
}

// Storage configures the embedded TSDB, or the remote engine in its place.
type Storage struct {
	Retention        model.Duration `yaml:"retention"`
	OutOfOrderWindow model.Duration `yaml:"out_of_order_window"`
	// WALSync fsyncs the embedded TSDB's write-ahead logs before a
	// remote-write request is answered (store.WALSyncer), so that an
	// acknowledged sample survives a power loss, not only a crash of the
	// process. On by default; off, the WAL is written but not fsynced
	// before the answer, as in Prometheus.
	WALSync bool `yaml:"wal_sync"`
	// Engine is embedded (default) or remote (see remote.go).
	Engine string        `yaml:"engine,omitempty"`
	Remote RemoteStorage `yaml:"remote,omitempty"`
}

// Query configures the PromQL engine.
type Query struct {
	Timeout       model.Duration `yaml:"timeout"`
	MaxSamples    int            `yaml:"max_samples"`
	LookbackDelta model.Duration `yaml:"lookback_delta"`
	// MaxConcurrent bounds the queries evaluated at once; one more gets 503
	// with Retry-After. 0 means no bound.
	MaxConcurrent int `yaml:"max_concurrent"`
	// SealedReadBytes bounds the index readings of sealed storage blocks
	// the gate keeps between exports (gate.Options.SealedReadBytes); 0 is
	// the gate's default (64 MiB), negative keeps none.
	SealedReadBytes int64 `yaml:"sealed_read_bytes"`
}

// Write configures remote-write ingestion.
type Write struct {
	// MaxBodyBytes bounds a request's compressed body; larger gets 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxSamplesPerRequest bounds the samples of one request; more gets 413
	// and nothing of the request is stored. 0 means no bound.
	MaxSamplesPerRequest int `yaml:"max_samples_per_request"`
	// MaxNewSeriesPerDay bounds the series a sender may create per UTC day
	// (series the server has not seen before); the ones beyond it are
	// refused with a 400 naming the limit. 0 means no bound.
	MaxNewSeriesPerDay int `yaml:"max_new_series_per_day"`
}

// HTTP configures the listener's protection against slow and greedy clients.
type HTTP struct {
	// Timeouts of net/http's server: a client that sends its headers, its
	// body, or reads the answer slower than these is disconnected.
	ReadHeaderTimeout model.Duration `yaml:"read_header_timeout"`
	ReadTimeout       model.Duration `yaml:"read_timeout"`
	WriteTimeout      model.Duration `yaml:"write_timeout"`
	IdleTimeout       model.Duration `yaml:"idle_timeout"`
	// RateLimit is the sustained requests per second of one caller (one
	// token; all anonymous requests share one budget), Burst how many may
	// come at once. Beyond it: 429 with Retry-After. 0 means no limit.
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
	// TLS, when cert_file and key_file are set, serves HTTPS only.
	TLS TLS `yaml:"tls,omitempty"`
}

// TLS configures HTTPS on the listener. Bearer tokens stay the identity;
// client certificates add that only holders of a certificate signed by
// client_ca_file can connect at all (senders on the head-end network).
type TLS struct {
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ClientCAFile, when set, verifies the client certificates presented;
	// RequireClientCert refuses connections without one.
	ClientCAFile      string `yaml:"client_ca_file,omitempty"`
	RequireClientCert bool   `yaml:"require_client_cert,omitempty"`
}

// Enabled reports whether the listener serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Caller is one identity that may call the server, with its bearer token.
// A sender writes; a reader reads with an audience; one caller may do both.
type Caller struct {
	Name string `yaml:"name"`
	// Token is the bearer token in clear; TokenSHA256, the hex SHA-256 of
	// the token, is preferred: the file then holds nothing that lets its
	// reader call the server. Exactly one of them is set.
	Token       string             `yaml:"token,omitempty"`
	TokenSHA256 string             `yaml:"token_sha256,omitempty"`
	Write       bool               `yaml:"write"`
	Audience    registry.Audience  `yaml:"audience"`  // empty: cannot read
	UseCases    []registry.UseCase `yaml:"use_cases"` // for the consented audience
	// Scrape lets the caller read /metrics (a Prometheus scraping the
	// server) without any access to meter data; operators may too.
	Scrape bool `yaml:"scrape,omitempty"`
	// Expires, when set, is the instant from which the token gets 401.
	Expires time.Time `yaml:"expires,omitempty"`

	digest [sha256.Size]byte // SHA-256 of the token, set by Validate
}

// HashToken is the value of token_sha256 for a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
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
			WALSync:          true,
		},
		Query: Query{
			Timeout:       model.Duration(2 * time.Minute),
			MaxSamples:    50_000_000,
			LookbackDelta: model.Duration(5 * time.Minute),
			// Prometheus's default: a dashboard's panels run at once.
			MaxConcurrent: 20,
		},
		Write: Write{
			MaxBodyBytes: 32 << 20,
			// A Prometheus sender batches 2,000 samples, vmagent ~10,000; a
			// head-end replaying a day of a district stays far below this.
			MaxSamplesPerRequest: 1_000_000,
			// A district has thousands of meters with a few series each; a
			// sender creating more than this a day is broken or hostile.
			MaxNewSeriesPerDay: 1_000_000,
		},
		HTTP: HTTP{
			ReadHeaderTimeout: model.Duration(10 * time.Second),
			ReadTimeout:       model.Duration(2 * time.Minute),
			WriteTimeout:      model.Duration(5 * time.Minute),
			IdleTimeout:       model.Duration(2 * time.Minute),
		},
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
	c.source = path
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

// Source is the file the configuration was loaded from ("" if parsed from
// bytes): the server reads it again on reload.
func (c *Config) Source() string { return c.source }

// Validate checks the configuration's consistency.
func (c *Config) Validate() error {
	if c.Write.MaxBodyBytes < 0 || c.Write.MaxSamplesPerRequest < 0 || c.Write.MaxNewSeriesPerDay < 0 || c.Query.MaxConcurrent < 0 || c.Query.MaxSamples < 0 {
		return errors.New("write and query limits must not be negative (0 means no limit)")
	}
	if c.HTTP.ReadHeaderTimeout < 0 || c.HTTP.ReadTimeout < 0 || c.HTTP.WriteTimeout < 0 || c.HTTP.IdleTimeout < 0 || c.Query.Timeout < 0 {
		return errors.New("timeouts must not be negative")
	}
	if c.HTTP.RateLimit < 0 || c.HTTP.Burst < 0 || (c.HTTP.RateLimit > 0 && c.HTTP.Burst == 0) {
		return errors.New("http: rate_limit must not be negative, and a rate_limit needs a positive burst")
	}
	if t := c.HTTP.TLS; (t.CertFile == "") != (t.KeyFile == "") || (!t.Enabled() && (t.ClientCAFile != "" || t.RequireClientCert)) || (t.RequireClientCert && t.ClientCAFile == "") {
		return errors.New("http.tls: cert_file and key_file go together; client_ca_file needs them; require_client_cert needs client_ca_file")
	}
	if c.Storage.OutOfOrderWindow < 0 || c.Storage.Retention <= 0 {
		return errors.New("storage: retention must be positive and out_of_order_window not negative")
	}
	if err := c.Storage.validateEngine(); err != nil {
		return err
	}
	if c.RegistryCheckInterval < 0 {
		return errors.New("registry_check_interval must not be negative")
	}
	if c.Anonymous != "" && c.Anonymous != registry.Public {
		return fmt.Errorf("anonymous may only be public, not %q", c.Anonymous)
	}
	names := map[string]bool{}
	tokens := map[[sha256.Size]byte]bool{}
	for i := range c.Callers {
		cl := &c.Callers[i]
		if cl.Name == "" {
			return fmt.Errorf("caller %d has no name", i+1)
		}
		if names[cl.Name] {
			return fmt.Errorf("caller %s is defined twice", cl.Name)
		}
		names[cl.Name] = true
		switch {
		case cl.Token != "" && cl.TokenSHA256 != "":
			return fmt.Errorf("caller %s: give token or token_sha256, not both", cl.Name)
		case cl.Token != "":
			if len(cl.Token) < 16 {
				return fmt.Errorf("caller %s: token must have at least 16 characters", cl.Name)
			}
			cl.digest = sha256.Sum256([]byte(cl.Token))
		case cl.TokenSHA256 != "":
			b, err := hex.DecodeString(cl.TokenSHA256)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("caller %s: token_sha256 must be 64 hexadecimal digits (sha256sum of the token)", cl.Name)
			}
			copy(cl.digest[:], b)
		default:
			return fmt.Errorf("caller %s has no token (token_sha256 or token)", cl.Name)
		}
		if tokens[cl.digest] {
			return fmt.Errorf("caller %s: token already given to another caller", cl.Name)
		}
		tokens[cl.digest] = true
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
		if !cl.Write && cl.Audience == "" && !cl.Scrape {
			return fmt.Errorf("caller %s can neither write, read nor scrape", cl.Name)
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

// Identify returns the caller whose token is token, unless its token has
// expired. The presented token is hashed and every configured digest is
// compared in constant time, so the time taken tells neither which caller
// nor which prefix matched.
func (c *Config) Identify(token string) (*Caller, bool) {
	return c.IdentifyAt(token, time.Now())
}

// IdentifyAt is Identify at the instant now (tests set it).
func (c *Config) IdentifyAt(token string, now time.Time) (*Caller, bool) {
	if token == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(token))
	var found *Caller
	for i := range c.Callers {
		if subtle.ConstantTimeCompare(c.Callers[i].digest[:], sum[:]) == 1 {
			found = &c.Callers[i]
		}
	}
	if found == nil || (!found.Expires.IsZero() && !now.Before(found.Expires)) {
		return nil, false
	}
	return found, true
}
