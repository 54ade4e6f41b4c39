package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
)

// soakCmd runs a server in a temporary directory under mixed load for a
// while: remote-write of new simulated days, dashboard queries, CSV
// exports. It reports counts, statuses, latencies, ingestion rate and
// memory every interval and at the end, and fails on any unexpected status.
func soakCmd(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("soak", flag.ContinueOnError)
	days := fset.Int("days", 30, "days backfilled before the soak starts")
	duration := fset.Duration("duration", 30*time.Minute, "duration of the soak, after the backfill")
	ingest := fset.Float64("ingest", 10, "district days delivered during the soak (multiple of the daily volume), spread over -duration")
	queriers := fset.Int("queriers", 4, "goroutines sending dashboard queries")
	exporters := fset.Int("exporters", 1, "goroutines fetching CSV exports")
	pause := fset.Duration("pause", 50*time.Millisecond, "pause of each querier and exporter between requests")
	every := fset.Duration("report", time.Minute, "interval of the progress reports")
	seed := fset.Uint64("seed", 1, "seed of the simulated district")
	dir := fset.String("dir", "", "directory of the server's data (default: a temporary directory, removed at the end)")
	logLevel := fset.String("log.level", "warn", "server log level")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *days <= 0 || *ingest <= 0 || *duration <= 0 || *queriers < 0 || *exporters < 0 {
		return errors.New("-days, -ingest and -duration must be positive, -queriers and -exporters not negative")
	}
	logger, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "metergate-soak-")
		if err != nil {
			return fmt.Errorf("creating the soak directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}

	// Days: the backfill, then the soak's new days up to yesterday.
	soakDays := int(math.Ceil(*ingest))
	until := localday.Of(time.Now()).AddDays(-1)
	backfillUntil := until.AddDays(-soakDays)
	first := backfillUntil.AddDays(1 - *days)

	cfgPath := filepath.Join(*dir, "metergate.yml")
	if err := writeDemoConfig(cfgPath, "127.0.0.1:0"); err != nil {
		return err
	}
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
	cfg.Listen = "127.0.0.1:0"
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
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx) }()
	defer func() {
		stopServer()
		if err := <-served; err != nil {
			logger.Error("soak: server stopped", "err", err)
		}
	}()

	st := newSoakStats()
	client := &http.Client{Transport: &timedTransport{next: http.DefaultTransport, stats: st}, Timeout: 2 * time.Minute}
	s, err := sender.New(sender.Config{URL: base + "/api/v1/write", Token: callerNamed(cfg, "headend").Token, Client: client, Logger: logger})
	if err != nil {
		return err
	}
	model, err := district.NewModel(reg, district.ModelOptions{Seed: *seed, Until: until})
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "metergate soak: server on %s, data in %s; backfilling %d days (%s to %s) of %d meters...\n",
		base, *dir, *days, first, backfillUntil, len(reg.Meters))
	began := time.Now()
	var backfilled int64
	for d := first; !d.After(backfillUntil); d = d.AddDays(1) {
		byConc, err := model.Deliver(d)
		if err != nil {
			return err
		}
		for c := range byConc {
			n, err := writeConcentrator(ctx, s, model, byConc, c, d)
			if err != nil {
				return err
			}
			backfilled += n
		}
	}
	if err := s.Flush(ctx); err != nil {
		return fmt.Errorf("flushing the backfill: %w", err)
	}
	elapsed := time.Since(began)
	fmt.Fprintf(os.Stderr, "metergate soak: backfill done, %d samples in %s (%.0f samples/s); soak of %s: %g days delivered, %d queriers, %d exporters\n",
		backfilled, elapsed.Round(100*time.Millisecond), float64(backfilled)/elapsed.Seconds(), *duration, *ingest, *queriers, *exporters)
	st.reset() // the report covers the soak, not the backfill

	soakCtx, stop := context.WithTimeout(ctx, *duration)
	defer stop()
	w := &soakWorkload{
		base: base, client: client, stats: st, pause: *pause, reg: reg, cfg: cfg,
		first: first, backfillUntil: backfillUntil,
	}
	var lastDay atomic.Int64 // latest day fully delivered, as days since first
	lastDay.Store(int64(*days - 1))
	w.lastDay = func() localday.Day { return first.AddDays(int(lastDay.Load())) }

	var wg sync.WaitGroup
	ingestErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ingestErr <- w.ingest(soakCtx, s, model, backfillUntil, *ingest, *duration, func(d localday.Day) {
			lastDay.Store(int64(d.Sub(first)))
		})
	}()
	for i := range *queriers {
		wg.Add(1)
		go func() { defer wg.Done(); w.query(soakCtx, uint64(i)) }()
	}
	for i := range *exporters {
		wg.Add(1)
		go func() { defer wg.Done(); w.export(soakCtx, uint64(100+i)) }()
	}
	mem := &memTrack{}
	rep := &reporter{stats: st, sender: s, mem: mem, dataDir: *dir, start: time.Now(), backfill: s.Stats().SamplesSent}
	rep.lastSent = rep.backfill
	mem.sample()
	ticker := time.NewTicker(*every)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-ticker.C:
			mem.sample()
			rep.interval(os.Stdout)
		case <-done:
			break loop
		}
	}
	ticker.Stop()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), time.Minute)
	defer closeCancel()
	sendErr := s.Close(closeCtx)
	mem.sample()
	rep.interval(os.Stdout)
	unexpected := rep.final(os.Stdout)

	var errs []error
	if err := <-ingestErr; err != nil {
		errs = append(errs, fmt.Errorf("ingestion: %w", err))
	}
	if sendErr != nil {
		errs = append(errs, fmt.Errorf("closing the sender: %w", sendErr))
	}
	if dropped := s.Stats().SamplesDropped; dropped > 0 {
		errs = append(errs, fmt.Errorf("%d samples dropped by the sender", dropped))
	}
	if unexpected > 0 {
		errs = append(errs, fmt.Errorf("%d requests with an unexpected status or a transport error", unexpected))
	}
	if ctx.Err() != nil {
		errs = append(errs, errors.New("interrupted before the end"))
	}
	return errors.Join(errs...)
}

// writeConcentrator sends concentrator c's delivery of day d and its
// readings, stamped at its collection time of the night after d.
func writeConcentrator(ctx context.Context, s *sender.Sender, model *district.Model, byConc [][]prompb.TimeSeries, c int, d localday.Day) (int64, error) {
	at := model.CollectionTime(c, d)
	if now := time.Now(); at.After(now) {
		at = now
	}
	series := append(byConc[c], model.Readings(c, d, at, at)...)
	var n int64
	for _, ts := range series {
		n += int64(len(ts.Samples))
	}
	if err := s.Write(ctx, series); err != nil {
		return n, fmt.Errorf("sending day %s: %w", d, err)
	}
	return n, nil
}

// soakWorkload is what the soak's goroutines share.
type soakWorkload struct {
	base          string
	client        *http.Client
	stats         *soakStats
	pause         time.Duration
	reg           *registry.Registry
	cfg           *config.Config
	first         localday.Day
	backfillUntil localday.Day
	lastDay       func() localday.Day
}

// ingest delivers the days after the backfill, in order, concentrator by
// concentrator, evenly over the soak: perDay apart per day.
func (w *soakWorkload) ingest(ctx context.Context, s *sender.Sender, model *district.Model, after localday.Day, days float64, total time.Duration, delivered func(localday.Day)) error {
	perDay := time.Duration(float64(total) / days)
	start := time.Now()
	for i := 0; ; i++ {
		d := after.AddDays(i + 1)
		if float64(i) >= days || d.After(localday.Of(time.Now()).AddDays(-1)) {
			return nil
		}
		byConc, err := model.Deliver(d)
		if err != nil {
			return err
		}
		for c := range byConc {
			due := start.Add(time.Duration(i)*perDay + perDay*time.Duration(c)/time.Duration(len(byConc)))
			t := time.NewTimer(time.Until(due))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			if _, err := writeConcentrator(ctx, s, model, byConc, c, d); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if err := s.Flush(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("flushing day %s: %w", d, err)
		}
		delivered(d)
	}
}

// query sends dashboard-like queries until ctx ends: public sums and
// quartiles over the district and its clusters' households over the last 30 days,
// consented individual days, and a query the gate must refuse.
func (w *soakWorkload) query(ctx context.Context, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	var clusters, uc3 []string
	for _, p := range w.reg.Perimeters {
		switch {
		case strings.HasPrefix(p.Name, "households-"): // quartiles only (registry forms)
			clusters = append(clusters, p.Name)
		case strings.HasPrefix(p.Name, "uc3-"):
			uc3 = append(uc3, p.Name)
		}
	}
	public := callerNamed(w.cfg, "opendata").Token
	households := callerNamed(w.cfg, "households").Token
	quartiles := []string{"0.25", "0.5", "0.75"}
	for ctx.Err() == nil {
		// Dashboards ask up to the last publishable day (D+2, docs/gate.md):
		// an instant query past it is refused.
		last := w.lastDay()
		if pub := localday.LastPublishable(time.Now()); last.After(pub) {
			last = pub
		}
		end := last.End()
		rangeParams := url.Values{
			"start": {strconv.FormatInt(end.AddDate(0, 0, -30).Unix(), 10)},
			"end":   {strconv.FormatInt(end.Unix(), 10)},
			"step":  {"86400"},
		}
		var kind, path, token, q string
		want := http.StatusOK
		params := url.Values{}
		switch n := rng.IntN(10); {
		case n < 3:
			kind, path, token = "public-sum", "/api/v1/query_range", public
			q = `sum(linky_consumption_daily_wh{perimeter="confluence"})`
			params = rangeParams
		case n < 6 && len(clusters) > 0:
			kind, path, token = "public-quartile", "/api/v1/query_range", public
			q = fmt.Sprintf(`quantile(%s, linky_consumption_daily_wh{perimeter=%q})`, quartiles[rng.IntN(3)], clusters[rng.IntN(len(clusters))])
			params = rangeParams
		case n < 7:
			kind, path, token = "public-instant", "/api/v1/query", public
			q = `sum(linky_consumption_daily_wh{perimeter="confluence"})`
			params.Set("time", strconv.FormatInt(end.Unix(), 10))
		case n < 9 && len(uc3) > 0:
			kind, path, token = "consented", "/api/v1/query_range", households
			q = fmt.Sprintf(`linky_consumption_daily_wh{perimeter=%q}`, uc3[rng.IntN(len(uc3))])
			params = rangeParams
		default:
			kind, path, token, want = "refused", "/api/v1/query", public, http.StatusForbidden
			q = `max(linky_consumption_daily_wh{perimeter="confluence"})`
			params.Set("time", strconv.FormatInt(end.Unix(), 10))
		}
		params.Set("query", q)
		w.get(ctx, kind, path+"?"+params.Encode(), token, want)
		sleep(ctx, w.pause)
	}
}

// export fetches uc4 CSV exports until ctx ends: the daily batch of a
// backfilled day, and a range of days.
func (w *soakWorkload) export(ctx context.Context, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xc5f))
	token := callerNamed(w.cfg, "opendata").Token
	span := w.backfillUntil.Sub(w.first)
	for ctx.Err() == nil {
		d := w.first.AddDays(rng.IntN(span + 1))
		if rng.IntN(2) == 0 {
			w.get(ctx, "export-day", "/api/v1/exports/uc4.csv?day="+d.String(), token, http.StatusOK)
		} else {
			from := w.first.AddDays(rng.IntN(max(1, span-6)))
			to := from.AddDays(6)
			w.get(ctx, "export-range", "/api/v1/exports/uc4.csv?from="+from.String()+"&to="+to.String(), token, http.StatusOK)
		}
		sleep(ctx, w.pause)
	}
}

// get sends one request, reads the whole answer and records it under kind.
func (w *soakWorkload) get(ctx context.Context, kind, path, token string, want int) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+path, nil)
	if err != nil {
		w.stats.record(kind, 0, 0, false)
		return
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	began := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			w.stats.record(kind, 0, time.Since(began), false)
			slog.Warn("soak: request failed", "kind", kind, "err", err)
		}
		return
	}
	_, copyErr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if copyErr != nil && ctx.Err() != nil {
		return // cut by the end of the soak
	}
	ok := resp.StatusCode == want && copyErr == nil
	if !ok {
		slog.Warn("soak: unexpected answer", "kind", kind, "path", path, "status", resp.StatusCode, "want", want, "err", copyErr)
	}
	w.stats.record(kind, resp.StatusCode, took, ok)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// timedTransport records the remote-write requests' statuses and
// latencies (the sender's retries show as separate requests).
type timedTransport struct {
	next  http.RoundTripper
	stats *soakStats
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost {
		return t.next.RoundTrip(req)
	}
	began := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		if req.Context().Err() == nil {
			t.stats.record("write", 0, time.Since(began), false)
		}
		return nil, err
	}
	t.stats.record("write", resp.StatusCode, time.Since(began), resp.StatusCode/100 == 2)
	return resp, nil
}

// soakStats keeps, per kind of request, the statuses and latencies over
// the whole soak and over the current interval.
type soakStats struct {
	mu    sync.Mutex
	kinds map[string]*kindStats
}

type kindStats struct {
	statuses   map[int]int64 // 0: transport error
	unexpected int64
	all, cur   []time.Duration
}

func newSoakStats() *soakStats { return &soakStats{kinds: map[string]*kindStats{}} }

func (s *soakStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kinds = map[string]*kindStats{}
}

func (s *soakStats) record(kind string, status int, took time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kinds[kind]
	if k == nil {
		k = &kindStats{statuses: map[int]int64{}}
		s.kinds[kind] = k
	}
	k.statuses[status]++
	if !ok {
		k.unexpected++
	}
	k.all = append(k.all, took)
	k.cur = append(k.cur, took)
}

// memTrack samples the process's memory: the server runs in it.
type memTrack struct {
	samples []memSample
}

type memSample struct {
	at         time.Time
	heap, rss  uint64 // bytes
	goroutines int
}

func (m *memTrack) sample() memSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{at: time.Now(), heap: ms.HeapAlloc, rss: readRSS(), goroutines: runtime.NumGoroutine()}
	m.samples = append(m.samples, s)
	return s
}

// readRSS reads the resident set size from /proc (0 elsewhere).
func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

type reporter struct {
	stats       *soakStats
	sender      *sender.Sender
	mem         *memTrack
	dataDir     string
	start, last time.Time
	lastSent    int64
	backfill    int64 // samples sent before the soak
}

// interval prints the interval's figures and starts a new interval.
func (r *reporter) interval(w io.Writer) {
	now := time.Now()
	if r.last.IsZero() {
		r.last = r.start
	}
	sent := r.sender.Stats().SamplesSent
	rate := float64(sent-r.lastSent) / now.Sub(r.last).Seconds()
	r.last, r.lastSent = now, sent
	m := r.mem.samples[len(r.mem.samples)-1]
	fmt.Fprintf(w, "soak +%s: ingested %.0f samples/s (%d in all), heap %s, RSS %s, data %s, %d goroutines\n",
		now.Sub(r.start).Round(time.Second), rate, sent, mib(m.heap), mib(m.rss), mib(uint64(dirSize(r.dataDir))), m.goroutines)
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	for _, kind := range slices.Sorted(maps.Keys(r.stats.kinds)) {
		k := r.stats.kinds[kind]
		fmt.Fprintf(w, "  %-16s %6d req  %s\n", kind, len(k.cur), percentiles(k.cur))
		k.cur = k.cur[:0]
	}
}

// final prints the soak's totals and returns the number of unexpected
// answers.
func (r *reporter) final(w io.Writer) int64 {
	elapsed := time.Since(r.start)
	st := r.sender.Stats()
	fmt.Fprintf(w, "\nsoak summary: %s\n", elapsed.Round(time.Second))
	soaked := st.SamplesSent - r.backfill
	fmt.Fprintf(w, "ingestion: %d samples sent during the soak (%.0f samples/s; %d in all), %d write requests, %d retries, %d samples dropped\n",
		soaked, float64(soaked)/elapsed.Seconds(), st.SamplesSent, st.Requests, st.Retries, st.SamplesDropped)
	var unexpected int64
	r.stats.mu.Lock()
	fmt.Fprintf(w, "%-16s %8s %10s  %-28s %s\n", "kind", "requests", "unexpected", "statuses", "latency")
	for _, kind := range slices.Sorted(maps.Keys(r.stats.kinds)) {
		k := r.stats.kinds[kind]
		var codes []string
		for _, c := range slices.Sorted(maps.Keys(k.statuses)) {
			codes = append(codes, fmt.Sprintf("%d:%d", c, k.statuses[c]))
		}
		fmt.Fprintf(w, "%-16s %8d %10d  %-28s %s\n", kind, len(k.all), k.unexpected, strings.Join(codes, " "), percentiles(k.all))
		unexpected += k.unexpected
	}
	r.stats.mu.Unlock()
	s := r.mem.samples
	if len(s) > 0 {
		var peakHeap, peakRSS uint64
		for _, m := range s {
			peakHeap, peakRSS = max(peakHeap, m.heap), max(peakRSS, m.rss)
		}
		firstM, lastM := s[0], s[len(s)-1]
		if len(s) > 2 {
			firstM = s[1] // end of the first interval
		}
		fmt.Fprintf(w, "memory: heap %s after the first interval, %s at the end, peak %s; RSS %s, %s, peak %s; goroutines %d → %d\n",
			mib(firstM.heap), mib(lastM.heap), mib(peakHeap), mib(firstM.rss), mib(lastM.rss), mib(peakRSS), firstM.goroutines, lastM.goroutines)
	}
	fmt.Fprintf(w, "data directory: %s\n", mib(uint64(dirSize(r.dataDir))))
	return unexpected
}

func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(p float64) time.Duration {
		return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s", at(0.5), at(0.9), at(0.99), s[len(s)-1].Round(100*time.Microsecond))
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
