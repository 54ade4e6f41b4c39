package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/enginestore"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/registry"
)

// openEngine puts the configured remote engine in place of the embedded
// TSDB (storage.engine: remote; docs/scaling.md).
func openEngine(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*enginestore.Store, error) {
	r := cfg.Storage.Remote
	queueDir := r.QueueDir
	if queueDir == "" {
		queueDir = "queue"
	}
	return enginestore.Open(enginestore.Options{
		Kind:          enginestore.Kind(r.Kind),
		WriteURL:      r.WriteURL,
		ReadURL:       r.ReadURL,
		ReadProtocol:  enginestore.ReadProtocol(r.ReadProtocol),
		Tenant:        r.Tenant,
		Headers:       r.Headers,
		Timeout:       time.Duration(r.Timeout),
		QueueDir:      cfg.Path(instancePath(queueDir)),
		QueueMaxBytes: r.QueueMaxBytes,
		Concurrency:   r.Concurrency,
		MinBackoff:    time.Duration(r.MinBackoff),
		MaxBackoff:    time.Duration(r.MaxBackoff),
	}, logger.With("component", "engine"), reg)
}

// instancePath replaces {instance} in a path with this server's instance
// name: $METERGATE_INSTANCE, else the host name (a container's or pod's
// name). Servers sharing a directory thus each keep their own audit log
// (one hash chain per writer, never two writers on one file) and their
// own forward queue.
func instancePath(p string) string {
	if !strings.Contains(p, "{instance}") {
		return p
	}
	name := os.Getenv("METERGATE_INSTANCE")
	if name == "" {
		name, _ = os.Hostname()
	}
	if name == "" {
		name = "metergate"
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r == 0 {
			return '_'
		}
		return r
	}, name)
	return strings.ReplaceAll(p, "{instance}", name)
}

// registryWatch reloads the registry when its files change
// (registry_check_interval), so that servers sharing one registry directory
// enforce a revoked consent without being signalled. The check runs on the
// caller's goroutine on the next use of the registry once the interval has
// passed: a query that follows a change by more than the interval is
// answered under the new registry, with no background poller to lag.
type registryWatch struct {
	last atomic.Int64 // unix nanoseconds of the last check
	mu   sync.Mutex   // one check at a time; others use the current registry
	sig  string       // the files' signature when last loaded
}

// check reloads the registry if the interval has passed and the files
// changed. A registry that fails to load or to pass the partition check
// leaves the previous one in force and is tried again at the next check.
func (w *registryWatch) check(s *Server) {
	interval := time.Duration(s.cfg.RegistryCheckInterval)
	if interval <= 0 {
		return
	}
	now := time.Now().UnixNano()
	if now-w.last.Load() < int64(interval) || !w.mu.TryLock() {
		return
	}
	defer w.mu.Unlock()
	w.last.Store(now)
	dir := s.cfg.Path(s.cfg.RegistryDir)
	sig, err := dirSignature(dir)
	if err != nil {
		s.logger.Warn("registry directory unreadable; the loaded registry stays in force", "err", err)
		return
	}
	if sig == w.sig {
		return
	}
	r, err := registry.Load(dir)
	if err == nil {
		err = gate.CheckPartition(r)
	}
	if err != nil {
		s.logger.Error("changed registry refused; the previous one stays in force", "err", err)
		return
	}
	s.registry.Store(r)
	w.sig = sig
	s.logger.Info("registry reloaded on change", "meters", len(r.Meters), "consents", len(r.Consents))
}

// dirSignature names every regular file of dir with its size and
// modification time: any rewrite of a registry file changes it.
func dirSignature(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", dir, err)
	}
	var parts []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", filepath.Join(dir, e.Name()), err)
		}
		parts = append(parts, fmt.Sprintf("%s:%d:%d", e.Name(), info.Size(), info.ModTime().UnixNano()))
	}
	slices.Sort(parts)
	return strings.Join(parts, "|"), nil
}
