package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/sender"
)

// simulateCmd generates the simulated Confluence district, saves its
// registry, backfills days over remote-write and optionally keeps going live.
func simulateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	url := fs.String("url", "http://localhost:9201/api/v1/write", "remote-write endpoint")
	token := fs.String("token", os.Getenv("METERGATE_TOKEN"), "bearer token (default $METERGATE_TOKEN)")
	dir := fs.String("registry", "", "directory where the simulated district's registry is written (required)")
	days := fs.Int("days", 90, "days to backfill, ending with -until")
	until := fs.String("until", "", "last day simulated, YYYY-MM-DD (default: yesterday, Europe/Paris)")
	seed := fs.Uint64("seed", 1, "seed of the simulation")
	live := fs.Bool("live", false, "after the backfill, keep delivering each finished day the next night")
	installed := fs.Int("installed", district.TotalMeters, "meters installed by the last day (the seed report: 5255)")
	reconciled := fs.Float64("reconciled", 1, "share of installed meters reconciled by the last day (the seed report: 0.888)")
	missing := fs.Float64("missing", 0.003, "share of meter-days lost over PLC")
	shards := fs.Int("shards", 4, "concurrent remote-write connections")
	batch := fs.Int("batch", 10000, "max samples per request")
	caFile := fs.String("ca-file", "", "CA certificate verifying an https:// receiver (default: the system's roots)")
	certFile := fs.String("cert-file", "", "client certificate, for a receiver that asks for one")
	keyFile := fs.String("key-file", "", "key of -cert-file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		fs.Usage()
		return fmt.Errorf("-registry is required")
	}
	opts := district.Options{Seed: *seed, Installed: *installed}
	if *until != "" {
		d, err := localday.Parse(*until)
		if err != nil {
			return fmt.Errorf("-until: %w", err)
		}
		opts.Until = d
	} else {
		opts.Until = localday.Of(time.Now()).AddDays(-1)
	}
	reg, err := district.Generate(opts)
	if err != nil {
		return fmt.Errorf("generating the district: %w", err)
	}
	if err := registry.Save(*dir, reg); err != nil {
		return fmt.Errorf("saving the registry: %w", err)
	}
	slog.Info("district generated", "meters", len(reg.Meters), "registry", *dir, "until", opts.Until)
	s, err := sender.New(sender.Config{URL: *url, Token: *token, Shards: *shards, MaxSamplesPerRequest: *batch,
		CAFile: *caFile, CertFile: *certFile, KeyFile: *keyFile})
	if err != nil {
		return err
	}
	missingRate := *missing
	if missingRate == 0 {
		missingRate = -1 // the model's zero means "default"
	}
	res, runErr := district.Simulate(ctx, reg, district.Config{
		Model: district.ModelOptions{Seed: *seed, Until: opts.Until, Reconciled: *reconciled, MissingRate: missingRate},
		Days:  *days, Live: *live, Progress: os.Stderr,
	}, s)
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	closeErr := s.Close(closeCtx)
	st := s.Stats()
	fmt.Fprintf(os.Stderr, "simulate: %d days, %d samples generated in %s; sent %d, dropped %d, %d requests, %d retries\n",
		res.Days, res.Samples, res.Elapsed.Round(time.Millisecond), st.SamplesSent, st.SamplesDropped, st.Requests, st.Retries)
	if runErr != nil && ctx.Err() == nil {
		return runErr
	}
	if closeErr != nil && ctx.Err() == nil {
		return closeErr
	}
	if st.SamplesDropped > 0 {
		return fmt.Errorf("%d samples were dropped by the receiver", st.SamplesDropped)
	}
	return nil
}
