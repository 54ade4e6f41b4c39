package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
)

// demoCmd is the README's first command: a server on the embedded TSDB in
// a local directory, filled with the simulated district's last days, kept
// live, and the URLs, tokens and queries a newcomer needs.
func demoCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "metergate-demo", "directory of the demo's configuration, registry and data")
	listen := fs.String("listen", "127.0.0.1:9464", "address to listen on")
	days := fs.Int("days", 90, "days of history to simulate")
	seed := fs.Uint64("seed", 1, "seed of the simulated district")
	live := fs.Bool("live", true, "keep the district live after the backfill")
	logLevel := fs.String("log.level", "warn", "server log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(*dir, "metergate.yml")
	if err := writeDemoConfig(cfgPath, *listen); err != nil {
		return err
	}
	until := localday.Of(time.Now()).AddDays(-1)
	reg, err := district.Generate(district.Options{Seed: *seed, Until: until})
	if err != nil {
		return fmt.Errorf("generating the district: %w", err)
	}
	if err := registry.Save(filepath.Join(*dir, "registry"), reg); err != nil {
		return fmt.Errorf("saving the registry: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	cfg.Listen = *listen
	srv, err := server.New(cfg, server.Options{Logger: logger})
	if err != nil {
		return err
	}
	addr, err := srv.Listen()
	if err != nil {
		_ = srv.Close()
		return err
	}
	base := "http://" + addr.String()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	fmt.Fprintf(os.Stderr, "metergate demo: server on %s, data in %s; simulating %d days of Confluence (%d meters)...\n",
		base, filepath.Join(*dir, "data"), *days, len(reg.Meters))
	ending := "The district stays live: each night the concentrators deliver the day before. Ctrl-C stops."
	if !*live {
		ending = fmt.Sprintf("-live=false: the demo stops now; `metergate serve -config %s` serves its data again.", cfgPath)
	}
	headend := callerNamed(cfg, "headend")
	s, err := sender.New(sender.Config{URL: base + "/api/v1/write", Token: headend.Token})
	if err != nil {
		return err
	}
	_, simErr := district.Simulate(ctx, reg, district.Config{
		Model:      district.ModelOptions{Seed: *seed, Until: until},
		Days:       *days,
		Live:       *live,
		Progress:   &everyNth{w: os.Stderr, n: 10},
		Backfilled: func(r district.Result) { printWelcome(os.Stdout, base, cfg, r, ending) },
	}, s)
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer closeCancel()
	simErr = errors.Join(simErr, s.Close(closeCtx))
	if ctx.Err() != nil {
		simErr = nil // interrupted: not an error
	}
	if !*live || simErr != nil {
		cancel()
	}
	<-ctx.Done()
	return errors.Join(simErr, <-served)
}

// writeDemoConfig writes a configuration with fresh random tokens, once:
// a demo directory that already has one keeps its tokens and data.
func writeDemoConfig(path, listen string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	cfg := config.Defaults()
	cfg.Listen = listen
	cfg.RuleFiles = []string{"rules/*.yml"}
	cfg.Anonymous = registry.Public
	cfg.Callers = []config.Caller{
		{Name: "headend", Token: newToken(), Write: true},
		{Name: "admin", Token: newToken(), Audience: registry.Operator},
		{Name: "opendata", Token: newToken(), Audience: registry.Public},
		{Name: "partner", Token: newToken(), Audience: registry.Restricted, UseCases: []registry.UseCase{registry.UC1, registry.UC2}},
		{Name: "households", Token: newToken(), Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC3}},
		{Name: "mobility", Token: newToken(), Audience: registry.Consented, UseCases: []registry.UseCase{registry.UC5}},
	}
	if err := os.MkdirAll(filepath.Join(filepath.Dir(path), "rules"), 0o755); err != nil {
		return fmt.Errorf("creating the demo directory: %w", err)
	}
	if err := copyRules(filepath.Join(filepath.Dir(path), "rules")); err != nil {
		return err
	}
	b, err := yaml.Marshal(&cfg)
	if err != nil {
		return fmt.Errorf("encoding the demo configuration: %w", err)
	}
	header := "# metergate demo configuration, written by `metergate demo`. Tokens are secrets.\n"
	if err := os.WriteFile(path, append([]byte(header), b...), 0o600); err != nil {
		return fmt.Errorf("writing the demo configuration: %w", err)
	}
	return nil
}

// copyRules copies the repository's rules into the demo when run from a
// checkout; elsewhere the demo runs without rules.
func copyRules(dst string) error {
	files, _ := filepath.Glob(filepath.Join("rules", "*.yml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("copying rules: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			return fmt.Errorf("copying rules: %w", err)
		}
	}
	return nil
}

func newToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func callerNamed(cfg *config.Config, name string) config.Caller {
	for _, c := range cfg.Callers {
		if c.Name == name {
			return c
		}
	}
	return config.Caller{}
}

func printWelcome(w io.Writer, base string, cfg *config.Config, r district.Result, ending string) {
	tok := func(name string) string { return callerNamed(cfg, name).Token }
	yesterday := localday.Of(time.Now()).AddDays(-2)
	at := yesterday.End().Unix()
	fmt.Fprintf(w, `
metergate demo is ready: %d days, %d samples ingested in %s.

  Query API (Prometheus-compatible): %[4]s/api/v1/query
  Remote-write (senders):            %[4]s/api/v1/write
  Health, metrics:                   %[4]s/-/ready  %[4]s/metrics

Tokens (also in the demo's metergate.yml):
  headend  (writes)                  %[5]s
  admin    (operator, audited)       %[6]s
  opendata (public)                  %[7]s
  partner  (restricted: uc1, uc2)    %[8]s
  households (consented: uc3)        %[9]s
  mobility (consented: uc5)          %[10]s

Try:
  curl -s -H 'Authorization: Bearer %[6]s' %[4]s/api/v1/query \
    --data-urlencode 'query=count(linky_index_wh)' --data-urlencode 'time=%[11]d'
  curl -s %[4]s/api/v1/query --data-urlencode 'query=sum(linky_consumption_daily_wh{perimeter="confluence"})' --data-urlencode 'time=%[11]d'
  curl -s %[4]s/api/v1/query --data-urlencode 'query=max(linky_consumption_daily_wh{perimeter="confluence"})'   # refused

%[12]s
`, r.Days, r.Samples, r.Elapsed.Round(100*time.Millisecond), base,
		tok("headend"), tok("admin"), tok("opendata"), tok("partner"), tok("households"), tok("mobility"), at, ending)
}

// everyNth passes one progress line in n, and the last one.
type everyNth struct {
	w    io.Writer
	n, i int
}

func (e *everyNth) Write(p []byte) (int, error) {
	e.i++
	if e.i%e.n == 1 || strings.Contains(string(p), "/") && lastOf(string(p)) {
		return e.w.Write(p)
	}
	return len(p), nil
}

func lastOf(line string) bool {
	var done, total int
	if i := strings.Index(line, "("); i >= 0 {
		if _, err := fmt.Sscanf(line[i:], "(%d/%d", &done, &total); err == nil {
			return done == total
		}
	}
	return false
}
