// Package server assembles metergate serve: storage, remote-write
// ingestion, the query API behind the evaluator, the rule manager, health
// and metrics endpoints, and an orderly shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/enginestore"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/perimeterapi"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/export"
	"github.com/metergate/metergate/remote/ingest"
	"github.com/metergate/metergate/remote/query"
)

// Server is a running metergate.
type Server struct {
	cfg      *config.Config
	logger   *slog.Logger
	reg      *prometheus.Registry
	store    store.Store
	engine   *promql.Engine
	rules    *rules.Manager
	audit    *audit.Log
	gate     *gate.Gate
	registry atomic.Pointer[registry.Registry]
	watch    registryWatch // registry_check_interval (engine.go)
	// auth is the configuration callers are identified by; Reload replaces
	// it, while the rest of cfg stays as the server started.
	auth     atomic.Pointer[config.Config]
	limits   *limits
	series   *ingest.SeriesLimiter
	walGuard *ingest.WALGuard // nil unless the embedded TSDB
	walSync  func() error     // nil unless the embedded TSDB with storage.wal_sync
	tls      *serverTLS       // nil: plain HTTP
	handler  http.Handler
	ready    atomic.Bool
	listener net.Listener
	http     *http.Server
}

// Options are what the configuration file does not say.
type Options struct {
	Logger *slog.Logger
	// Store, when set, replaces the embedded TSDB (tests, remote engines).
	Store store.Store
	// BlockDuration overrides the TSDB head block range.
	BlockDuration time.Duration
	// MaxBlockDuration overrides the cap on compacted TSDB blocks.
	MaxBlockDuration time.Duration
	// Now is the clock of the D+2 rule and of consents (tests set it).
	Now func() time.Time
}

// New opens storage, loads the registry and the rules, and builds the HTTP
// handler. Nothing listens until Serve.
func New(cfg *config.Config, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, logger: o.Logger, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.limits = newLimits(cfg, s.reg)
	s.auth.Store(cfg)
	var err error
	if s.tls, err = s.setupTLS(); err != nil {
		return nil, err
	}

	if err := s.reloadRegistry(); err != nil {
		return nil, err
	}
	s.store = o.Store
	if s.store == nil && cfg.Storage.Engine == config.EngineRemote {
		es, err := openEngine(cfg, o.Logger, s.reg)
		if err != nil {
			return nil, err
		}
		s.store = es
	}
	if s.store == nil {
		db, err := store.OpenEmbedded(cfg.Path(cfg.DataDir), store.Options{
			Retention:        time.Duration(cfg.Storage.Retention),
			OutOfOrderWindow: time.Duration(cfg.Storage.OutOfOrderWindow),
			BlockDuration:    o.BlockDuration,
			MaxBlockDuration: o.MaxBlockDuration,
		}, o.Logger.With("component", "tsdb"), s.reg)
		if err != nil {
			return nil, err
		}
		s.store = db
		reportWALRepair(s.reg, o.Logger)
	}
	if cfg.Write.MaxNewSeriesPerDay > 0 {
		s.series = ingest.NewSeriesLimiter(cfg.Write.MaxNewSeriesPerDay, o.Now)
	}
	if db, ok := s.store.(*store.Embedded); ok {
		s.walGuard = ingest.NewWALGuard()
		n, err := seedSeries(context.Background(), db.DB, s.series, s.walGuard)
		if err != nil {
			_ = s.store.Close()
			return nil, err
		}
		o.Logger.Debug("series known to the new-series limit and the WAL guard", "series", n)
		if cfg.Storage.WALSync {
			s.walSync = store.NewWALSyncer(cfg.Path(cfg.DataDir)).Sync
		}
	}
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "metergate_tsdb_head_series",
		Help: "Series held in the TSDB head (in memory).",
	}, func() float64 { return float64(s.store.HeadSeries()) }))

	s.engine = promql.NewEngine(promql.EngineOpts{
		Logger:               o.Logger.With("component", "promql"),
		Reg:                  s.reg,
		MaxSamples:           cfg.Query.MaxSamples,
		Timeout:              time.Duration(cfg.Query.Timeout),
		LookbackDelta:        time.Duration(cfg.Query.LookbackDelta),
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	auditLog, err := audit.Open(cfg.Path(instancePath(cfg.AuditLog)), s.reg)
	if err != nil {
		_ = s.store.Close()
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	if auditLog.TruncatedTail > 0 {
		o.Logger.Warn("audit log: an unfinished last record (a crash or a full disk while writing; its answer was never sent) was cut off", "bytes", auditLog.TruncatedTail)
	}
	s.audit = auditLog
	var push gate.Pushdown
	if es, ok := s.store.(*enginestore.Store); ok && cfg.Storage.Remote.Evaluate != config.EvaluateGate {
		// The engine computes what the gate publishes (docs/scaling.md);
		// operators' raw reads keep the configured read protocol.
		push = es.Evaluator()
	}
	s.gate, err = gate.New(gate.Options{
		Registry:        s.Registry,
		Queryable:       s.store,
		Pushdown:        push,
		Engine:          s.engine,
		Audit:           auditLog,
		Now:             o.Now,
		LookbackDelta:   time.Duration(cfg.Query.LookbackDelta),
		SealedReadBytes: cfg.Query.SealedReadBytes,
		Logger:          o.Logger.With("component", "gate"),
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	for _, result := range []string{"hit", "miss", "unsealed"} {
		s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "metergate_gate_sealed_reads_total",
			Help:        "Reads of an index register over one storage block by exports: from the readings kept of a sealed block (hit), of a sealed block not kept (miss), of a block that may still change (unsealed).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 {
			st := s.gate.SealedReads()
			return float64(map[string]uint64{"hit": st.Hits, "miss": st.Misses, "unsealed": st.Unsealed}[result])
		}))
	}
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "metergate_gate_sealed_read_bytes",
		Help: "Estimated memory of the index readings of sealed storage blocks kept between exports (query.sealed_read_bytes bounds it).",
	}, func() float64 { return float64(s.gate.SealedReads().Bytes) }))
	if err := s.startRules(); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.handler = s.routes(&gateEvaluator{gate: s.gate, hits: s.limits.hits})
	s.ready.Store(true)
	return s, nil
}

// Registry returns the current snapshot of the district registry.
func (s *Server) Registry() *registry.Registry {
	s.watch.check(s)
	return s.registry.Load()
}

// Store returns the storage the server reads and writes.
func (s *Server) Store() store.Store { return s.store }

// Engine returns the PromQL engine.
func (s *Server) Engine() *promql.Engine { return s.engine }

// Metrics returns the registry of the server's own metrics.
func (s *Server) Metrics() *prometheus.Registry { return s.reg }

// Reload reads the configuration file's callers (tokens, audiences,
// expiries, anonymous access) and the registry directory again (SIGHUP). A
// configuration or a registry that fails to load, or a registry whose
// perimeters would let published sums be differenced down to fewer meters
// than the policy allows, is refused and the previous ones stay in force.
// Other settings (listen address, storage, limits) need a restart.
func (s *Server) Reload() error {
	auth := s.auth.Load()
	if src := s.cfg.Source(); src != "" {
		c, err := config.Load(src)
		if err != nil {
			return fmt.Errorf("reloading configuration: %w", err)
		}
		auth = c
	}
	if err := s.tls.reload(); err != nil {
		return err
	}
	if err := s.reloadRegistry(); err != nil {
		return err
	}
	s.auth.Store(auth)
	s.logger.Info("callers loaded", "callers", len(auth.Callers))
	return nil
}

func (s *Server) reloadRegistry() error {
	r, err := registry.Load(s.cfg.Path(s.cfg.RegistryDir))
	if err != nil {
		return fmt.Errorf("loading registry: %w", err)
	}
	if err := gate.CheckPartition(r); err != nil {
		return fmt.Errorf("registry refused: %w", err)
	}
	s.registry.Store(r)
	s.logger.Info("registry loaded", "meters", len(r.Meters), "perimeters", len(r.PerimeterNames()), "consents", len(r.Consents))
	return nil
}

func (s *Server) startRules() error {
	var files []string
	for _, pattern := range s.cfg.RuleFiles {
		m, err := filepath.Glob(s.cfg.Path(pattern))
		if err != nil {
			return fmt.Errorf("rule_files %q: %w", pattern, err)
		}
		files = append(files, m...)
	}
	logger := s.logger.With("component", "rules")
	s.rules = rules.NewManager(&rules.ManagerOptions{
		AppendableV2: s.store,
		Queryable:    s.store,
		QueryFunc:    rules.EngineQueryFunc(s.engine, s.store),
		NotifyFunc: func(_ context.Context, expr string, alerts ...*rules.Alert) {
			for _, a := range alerts {
				logger.Warn("alert", "name", a.Labels.Get("alertname"), "state", a.State.String(), "labels", a.Labels.String(), "expr", expr)
			}
		},
		Context:    context.Background(),
		Logger:     logger,
		Registerer: s.reg,
	})
	if err := s.rules.Update(time.Minute, files, labels.EmptyLabels(), "", nil); err != nil {
		return fmt.Errorf("loading rules: %w", err)
	}
	go s.rules.Run()
	logger.Info("rules loaded", "files", len(files), "groups", len(s.rules.RuleGroups()))
	return nil
}

// Handler is the server's HTTP handler (for tests that do not listen).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the configured address (":0" picks a free port).
func (s *Server) Listen() (net.Addr, error) {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	s.listener = l
	return l.Addr(), nil
}

// Serve answers requests until ctx ends, then shuts down in order: stop
// accepting, finish requests in flight (their samples are committed), stop
// the rules, close the TSDB (which flushes the head's chunks).
func (s *Server) Serve(ctx context.Context) error {
	if s.listener == nil {
		if _, err := s.Listen(); err != nil {
			return err
		}
	}
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: time.Duration(s.cfg.HTTP.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(s.cfg.HTTP.ReadTimeout),
		WriteTimeout:      time.Duration(s.cfg.HTTP.WriteTimeout),
		IdleTimeout:       time.Duration(s.cfg.HTTP.IdleTimeout),
		ConnState:         s.limits.connState,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	ln := s.listener
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls.config)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	s.logger.Info("serving", "addr", s.listener.Addr().String())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	return errors.Join(serveErr, s.shutdown())
}

func (s *Server) shutdown() error {
	s.ready.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping HTTP: %w", err))
		}
	}
	return errors.Join(append(errs, s.Close())...)
}

// Close stops the rules, closes the audit log and storage.
func (s *Server) Close() error {
	if s.rules != nil {
		s.rules.Stop()
		s.rules = nil
	}
	var auditErr error
	if s.audit != nil {
		auditErr = s.audit.Close()
		s.audit = nil
	}
	if s.store == nil {
		return nil
	}
	err := s.store.Close()
	s.store = nil
	if err != nil {
		return errors.Join(auditErr, fmt.Errorf("closing storage: %w", err))
	}
	s.logger.Info("storage closed")
	return auditErr
}

type callerKey struct{}

// CallerOf returns the authenticated caller of a request, or nil.
func CallerOf(r *http.Request) *config.Caller {
	c, _ := r.Context().Value(callerKey{}).(*config.Caller)
	return c
}

// authenticate resolves the bearer token. A request with a wrong or expired
// token is refused here, before any handler; a request without one
// continues as the anonymous caller if the configuration has one, else as
// nobody. A caller past its request rate gets 429.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := s.auth.Load() // the callers in force, as of the last reload
		var caller *config.Caller
		if cfg.Anonymous != "" {
			caller = &config.Caller{Name: "anonymous", Audience: cfg.Anonymous}
		}
		auth := r.Header.Get("Authorization")
		if auth != "" {
			token, ok := strings.CutPrefix(auth, "Bearer ")
			c, found := cfg.Identify(strings.TrimSpace(token))
			if !ok || !found {
				w.Header().Set("WWW-Authenticate", `Bearer realm="metergate", error="invalid_token"`)
				http.Error(w, "invalid bearer token", http.StatusUnauthorized)
				return
			}
			caller = c
		}
		if !s.limits.limitRate(w, caller) {
			return
		}
		if caller != nil {
			r = r.WithContext(context.WithValue(r.Context(), callerKey{}, caller))
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) routes(eval query.Evaluator) http.Handler {
	mux := http.NewServeMux()
	write := ingest.NewHandler(ingest.Options{
		Storage:                s.store,
		MaxBodyBytes:           s.cfg.Write.MaxBodyBytes,
		MaxSamplesPerRequest:   s.cfg.Write.MaxSamplesPerRequest,
		Series:                 s.series,
		WAL:                    s.walGuard,
		Sync:                   s.walSync,
		Sender:                 func(r *http.Request) string { return CallerOf(r).Name },
		LimitHits:              s.limits.hits,
		CollectionNeedsConsent: policy.CollectionNeedsConsent,
		CurveCollectable:       func(rmp string, t time.Time) bool { return s.Registry().CurveCollectable(rmp, t) },
		Logger:                 s.logger.With("component", "ingest"),
		Registerer:             s.reg,
	})
	mux.Handle("/api/v1/write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := CallerOf(r)
		if c == nil || !c.Write {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
			http.Error(w, "a sender's bearer token is required", http.StatusUnauthorized)
			return
		}
		if !s.ready.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		write.ServeHTTP(w, r)
	}))
	api := &query.API{Eval: eval, Caller: CallerOf, RefusalError: gate.ErrRefused}
	api.Register(mux)
	mux.HandleFunc("POST /api/v1/admin/snapshot", s.serveSnapshot)
	mux.Handle(export.Prefix, export.NewHandler(export.Options{Gate: s.gate, Registry: s.Registry, Caller: CallerOf, Logger: s.logger.With("component", "export")}))
	mux.HandleFunc("GET /api/v1/whoami", serveWhoami)
	mux.HandleFunc("GET "+perimeterapi.Path, s.servePerimeters)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("metergate is healthy.\n"))
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "metergate is not ready.", http.StatusServiceUnavailable)
			return
		}
		if err := s.store.Ready(r.Context()); err != nil {
			http.Error(w, "storage not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("metergate is ready.\n"))
	})
	s.metadataRoutes(mux)
	mux.Handle("/metrics", s.metricsHandler(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	return s.authenticate(s.boundQueries(mux))
}

// metricsHandler lets operators and scrape-only callers read /metrics. The
// server's own metrics hold no meter data, but the gate's decision and
// suppression counters by audience and rule are query statistics about
// other callers, a side channel POLICY.md names.
func (s *Server) metricsHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := CallerOf(r)
		switch {
		case c == nil:
			w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
			http.Error(w, "a bearer token with scrape or operator access is required", http.StatusUnauthorized)
		case c.Scrape || c.Audience == registry.Operator:
			next.ServeHTTP(w, r)
		case c.Audience == "" || c.Name == "anonymous":
			w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
			http.Error(w, "a bearer token with scrape or operator access is required", http.StatusUnauthorized)
		default:
			writeRefused(w)
		}
	})
}
