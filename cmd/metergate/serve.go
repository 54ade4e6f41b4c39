package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/server"
)

func serveCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "metergate.yml", "configuration file (YAML; see docs/configuration.md)")
	listen := fs.String("listen", "", "address to listen on, overriding the configuration (e.g. 127.0.0.1:0)")
	dataDir := fs.String("data-dir", "", "TSDB directory, overriding the configuration")
	blockDuration := fs.Duration("storage.block-duration", store.DefaultBlockDuration, "TSDB head block range (docs/performance.md)")
	maxBlockDuration := fs.Duration("storage.max-block-duration", store.DefaultMaxBlockDuration, "cap on compacted TSDB blocks, at most a tenth of the retention (docs/configuration.md)")
	logLevel := fs.String("log.level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	srv, err := server.New(cfg, server.Options{Logger: logger, BlockDuration: *blockDuration, MaxBlockDuration: *maxBlockDuration})
	if err != nil {
		return err
	}
	addr, err := srv.Listen()
	if err != nil {
		_ = srv.Close()
		return err
	}
	// The listening address on stdout lets scripts and tests that asked for
	// port 0 find the server.
	fmt.Printf("metergate listening on %s://%s\n", srv.Scheme(), addr)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := srv.Reload(); err != nil {
				logger.Error("reload refused; the previous registry stays in force", "err", err)
			}
		}
	}()
	return srv.Serve(ctx)
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
