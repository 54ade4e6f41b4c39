// Package servertest starts a real metergate server on a loopback port for
// tests, with a registry and one caller per audience.
package servertest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/server"
)

// Tokens of the callers every test server knows.
const (
	SenderToken     = "sender-token-0123456789"
	OperatorToken   = "operator-token-0123456789"
	PublicToken     = "public-token-0123456789"
	RestrictedToken = "restricted-token-0123456789"
	ConsentedToken  = "consented-token-0123456789"
	ScrapeToken     = "scrape-token-0123456789"
)

// Callers is the callers section of every test server.
var Callers = []config.Caller{
	{Name: "headend", Token: SenderToken, Write: true},
	{Name: "admin", Token: OperatorToken, Audience: registry.Operator},
	{Name: "opendata", Token: PublicToken, Audience: registry.Public},
	{Name: "partner", Token: RestrictedToken, Audience: registry.Restricted, UseCases: []registry.UseCase{registry.UC1, registry.UC2}},
	{Name: "prometheus", Token: ScrapeToken, Scrape: true},
	{Name: "household-app", Token: ConsentedToken, Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3, registry.UC5}},
}

// Instance is a running test server.
type Instance struct {
	URL    string
	Dir    string
	Server *server.Server
	stop   context.CancelFunc
	done   chan error
}

// Options of a test server.
type Options struct {
	Registry *registry.Registry // nil: a registry with no meters
	Server   server.Options
	// Edit changes the configuration before the server starts.
	Edit func(*config.Config)
	// Dir reuses a directory (to reopen a server's data).
	Dir string
}

// Start runs a server until the test ends.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	dir := o.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	reg := o.Registry
	if reg == nil {
		reg = &registry.Registry{}
	}
	require.NoError(t, registry.Save(filepath.Join(dir, "registry"), reg))
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Callers = Callers
	cfg.RuleFiles = nil
	if o.Edit != nil {
		o.Edit(&cfg)
	}
	b, err := yaml.Marshal(&cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, "metergate.yml")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	loaded, err := config.Load(path)
	require.NoError(t, err)

	if o.Server.Logger == nil {
		o.Server.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := server.New(loaded, o.Server)
	require.NoError(t, err)
	addr, err := srv.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instance{URL: fmt.Sprintf("http://%s", addr), Dir: dir, Server: srv, stop: cancel, done: make(chan error, 1)}
	go func() { in.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { _ = in.Stop() })
	WaitOK(t, in.URL+"/-/ready")
	return in
}

// Stop shuts the server down as SIGTERM does and waits for it.
func (in *Instance) Stop() error {
	if in.stop == nil {
		return nil
	}
	in.stop()
	in.stop = nil
	return <-in.done
}

// WaitOK polls url until it answers 200, for at most a minute: servers
// and peers (Prometheus, vmagent) started by tests take a moment.
func WaitOK(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within a minute", url)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
