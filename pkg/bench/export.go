package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/sender"
)

// ExportConfig is the export comparison of `metergate bench -modes export`:
// days of the simulated district's daily index registers, sent over
// remote-write to a metergate server and to VictoriaMetrics 1.79.5 (both
// started here), then metergate's gated CSV export of every public
// perimeter of uc4 (sums, quartiles and set sizes of the district, its 30
// clusters and the producers, audited) against VictoriaMetrics'
// /api/v1/export/csv of the raw samples behind it, Reps times each.
type ExportConfig struct {
	WorkDir                          string
	MetergateBin, VictoriaMetricsBin string
	Days, Reps                       int
	Log                              io.Writer
}

// ExportResult is one export of one repetition.
type ExportResult struct {
	Rep     int     `json:"rep"`
	Who     string  `json:"who"` // metergate or victoriametrics
	Rows    int64   `json:"rows"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	// PeakRSS is the process's VmHWM during the export (reset before it),
	// Growth that peak over its resident size just before.
	PeakRSS int64 `json:"peak_rss_bytes"`
	Growth  int64 `json:"rss_growth_bytes"`
	// CPUS is the serving process's CPU time during the export.
	CPUS float64 `json:"cpu_s"`
	// SealedHits and SealedReads (metergate) are the block reads of the
	// export served from the readings the gate kept of sealed blocks, and
	// all its block reads: the first export after the start reads every
	// block from storage, the next ones only what changed.
	SealedHits  int64 `json:"sealed_hits,omitempty"`
	SealedReads int64 `json:"sealed_reads,omitempty"`
}

// ExportReport is what RunExport measured.
type ExportReport struct {
	Days    int
	Samples int64 // daily index samples sent to each
	Results []ExportResult
}

// exportUseCase is the use case exported: the public one (district,
// clusters, producers).
const exportUseCase = registry.UC4

// RunExport runs the export comparison.
func RunExport(ctx context.Context, c ExportConfig) (*ExportReport, error) {
	if c.Days < 1 || c.Reps < 1 {
		return nil, fmt.Errorf("export bench: days (%d) and repetitions (%d) must be positive", c.Days, c.Reps)
	}
	logf := func(format string, args ...any) {
		if c.Log != nil {
			fmt.Fprintf(c.Log, "[%s] %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
		}
	}
	dir := filepath.Join(c.WorkDir, "export")
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("cleaning %s: %w", dir, err)
	}
	// The server publishes by its own clock: the last day is the last
	// publishable one (D+2, Europe/Paris).
	until := localday.LastPublishable(time.Now())
	first := until.AddDays(1 - c.Days)
	reg, err := district.Generate(district.Options{Seed: 1, Until: until})
	if err != nil {
		return nil, fmt.Errorf("generating the district: %w", err)
	}
	tokens := map[string]string{}
	for _, name := range []string{"sender", "reader", "scraper"} {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("making a token: %w", err)
		}
		tokens[name] = hex.EncodeToString(b)
	}
	bc := &Config{WorkDir: dir, MetergateBin: c.MetergateBin, VictoriaMetricsBin: c.VictoriaMetricsBin,
		metergateConfig: filepath.Join(dir, "metergate", "metergate.yml")}
	if err := registry.Save(filepath.Join(dir, "metergate", "registry"), reg); err != nil {
		return nil, fmt.Errorf("saving the district registry: %w", err)
	}
	if err := writeExportConfig(bc.metergateConfig, tokens, c.Days, true); err != nil {
		return nil, err
	}
	mgRecv, mgDir := Receiver{Kind: Metergate, BlockDuration: store.DefaultBlockDuration}, filepath.Join(dir, "metergate-run")

	mg, err := bc.start(ctx, mgRecv, "export", mgDir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = mg.stop() }()
	vm, err := bc.start(ctx, Receiver{Kind: VictoriaMetrics}, "export", filepath.Join(dir, "victoriametrics-run"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = vm.stop() }()

	logf("export: simulating %d days of the district (%d meters) into metergate and VictoriaMetrics", c.Days, len(reg.Meters))
	began := time.Now()
	n, err := loadDaily(ctx, reg, until, c.Days, mg.base, tokens["sender"], vm.base)
	if err != nil {
		return nil, err
	}
	logf("export: %d daily index samples sent to each in %s", n, time.Since(began).Round(time.Second))
	if err := httpGet(ctx, vm.base+"/internal/force_flush"); err != nil {
		return nil, fmt.Errorf("flushing VictoriaMetrics: %w", err)
	}
	// Both settle (compactions, merges). metergate then restarts with its
	// default out-of-order window instead of the year it took the
	// backfill with, as a server in production would after an import
	// (docs/exports.md#imports): its first export reads everything from
	// storage, the next ones read the sealed blocks it kept
	// (gate.SealedReadBytes). VictoriaMetrics keeps running with the
	// caches the backfill warmed: restarted, its exports were 1.5-2x
	// slower for a while, which would flatter metergate.
	for _, p := range []*process{mg, vm} {
		if _, err := settle(ctx, p.pid(), time.Now(), 3*time.Second); err != nil {
			return nil, err
		}
	}
	if err := mg.stop(); err != nil {
		return nil, fmt.Errorf("stopping metergate after the backfill: %w", err)
	}
	if err := writeExportConfig(bc.metergateConfig, tokens, c.Days, false); err != nil {
		return nil, err
	}
	if mg, err = bc.launch(ctx, mgRecv, "export", mgDir); err != nil {
		return nil, err
	}
	if _, err := settle(ctx, mg.pid(), time.Now(), 3*time.Second); err != nil {
		return nil, err
	}
	rep := &ExportReport{Days: c.Days, Samples: n}
	mgURL := mg.base + "/api/v1/exports/" + string(exportUseCase) + ".csv?" + url.Values{"from": {first.String()}, "to": {until.String()}}.Encode()
	vmURL := vm.base + "/api/v1/export/csv?" + url.Values{
		"match[]": {`{__name__=~"` + catalogue.IndexConsumption + "|" + catalogue.IndexInjection + `"}`},
		"format":  {"__name__,rmp,__timestamp__:rfc3339,__value__"},
		// The readings at the midnights opening and closing every day.
		"start": {strconv.FormatInt(first.Start().Add(-time.Minute).Unix(), 10)},
		"end":   {strconv.FormatInt(until.End().Unix(), 10)},
	}.Encode()
	results := filepath.Join(dir, "results.jsonl")
	out, err := os.Create(results)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", results, err)
	}
	defer out.Close()
	enc := json.NewEncoder(out)
	for r := 1; r <= c.Reps; r++ {
		runs := []struct {
			who, url, token string
			p               *process
		}{{Metergate, mgURL, tokens["reader"], mg}, {VictoriaMetrics, vmURL, "", vm}}
		if r%2 == 0 {
			runs[0], runs[1] = runs[1], runs[0] // neither always runs on a machine warmed by the other
		}
		for _, run := range runs {
			var sealed0 [2]int64
			if run.who == Metergate {
				if sealed0, err = sealedReads(ctx, mg.base, tokens["scraper"]); err != nil {
					return nil, err
				}
			}
			res, err := timeExport(ctx, run.p.pid(), run.url, run.token)
			if err != nil {
				return nil, fmt.Errorf("export from %s: %w", run.who, err)
			}
			if run.who == Metergate {
				sealed, err := sealedReads(ctx, mg.base, tokens["scraper"])
				if err != nil {
					return nil, err
				}
				res.SealedHits, res.SealedReads = sealed[0]-sealed0[0], sealed[1]-sealed0[1]
			}
			res.Rep, res.Who = r, run.who
			rep.Results = append(rep.Results, res)
			if err := enc.Encode(res); err != nil {
				return nil, fmt.Errorf("writing %s: %w", results, err)
			}
			sealedNote := ""
			if res.SealedReads > 0 {
				sealedNote = fmt.Sprintf(", %d of %d block reads from sealed blocks kept", res.SealedHits, res.SealedReads)
			}
			logf("export run %d: %s %d rows, %.1f MB in %.2f s, CPU %.2f s, peak RSS %.0f MB (+%.0f MB)%s", r, run.who, res.Rows,
				float64(res.Bytes)/1e6, res.Seconds, res.CPUS, float64(res.PeakRSS)/1e6, float64(res.Growth)/1e6, sealedNote)
		}
	}
	if err := rep.check(); err != nil {
		return nil, err
	}
	return rep, nil
}

// check refuses a run whose exports are not what they should be: every
// repetition of an export must give the same rows, and metergate's must
// hold a row for every day.
func (r *ExportReport) check() error {
	rows := map[string]int64{}
	for _, x := range r.Results {
		if prev, ok := rows[x.Who]; ok && prev != x.Rows {
			return fmt.Errorf("export bench: %s gave %d rows, then %d", x.Who, prev, x.Rows)
		}
		rows[x.Who] = x.Rows
	}
	if rows[Metergate] < int64(r.Days) || rows[VictoriaMetrics] < int64(r.Days) {
		return fmt.Errorf("export bench: %d rows from metergate, %d from VictoriaMetrics for %d days", rows[Metergate], rows[VictoriaMetrics], r.Days)
	}
	return nil
}

func writeExportConfig(path string, tokens map[string]string, days int, backfill bool) error {
	cfg := config.Defaults()
	cfg.RegistryDir = "registry"
	cfg.RuleFiles = []string{}
	cfg.AuditLog = "audit.log"
	if backfill {
		// A year is backfilled in minutes: the head must take it.
		cfg.Storage.OutOfOrderWindow = model.Duration(time.Duration(days+10) * 24 * time.Hour)
	}
	cfg.Callers = []config.Caller{
		{Name: "simulator", Token: tokens["sender"], Write: true},
		{Name: "data-platform", Token: tokens["reader"], Audience: registry.Public},
		{Name: "prometheus", Token: tokens["scraper"], Scrape: true},
	}
	b, err := yaml.Marshal(&cfg)
	if err != nil {
		return fmt.Errorf("encoding metergate configuration: %w", err)
	}
	if _, err := config.Parse(b); err != nil {
		return fmt.Errorf("export bench configuration: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	return os.WriteFile(path, b, 0o600)
}

// dailyTee sends the simulation's daily index series (what a daily export
// reads) to both receivers.
type dailyTee struct {
	to      []*sender.Sender
	samples int64
}

func (t *dailyTee) Write(ctx context.Context, series []prompb.TimeSeries) error {
	var keep []prompb.TimeSeries
	for _, s := range series {
		for _, l := range s.Labels {
			if l.Name == model.MetricNameLabel && (l.Value == catalogue.IndexConsumption || l.Value == catalogue.IndexInjection) {
				keep = append(keep, s)
				t.samples += int64(len(s.Samples))
				break
			}
		}
	}
	for _, s := range t.to {
		if err := s.Write(ctx, keep); err != nil {
			return err
		}
	}
	return nil
}

func (t *dailyTee) Flush(ctx context.Context) error {
	for _, s := range t.to {
		if err := s.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// loadDaily simulates days of the district ending with until and sends the
// daily index registers to metergate and VictoriaMetrics.
func loadDaily(ctx context.Context, reg *registry.Registry, until localday.Day, days int, mgBase, token, vmBase string) (int64, error) {
	mgs, err := sender.New(sender.Config{URL: mgBase + "/api/v1/write", Token: token, Shards: 2})
	if err != nil {
		return 0, err
	}
	vms, err := sender.New(sender.Config{URL: vmBase + "/api/v1/write", Shards: 2})
	if err != nil {
		return 0, err
	}
	t := &dailyTee{to: []*sender.Sender{mgs, vms}}
	_, err = district.Simulate(ctx, reg, district.Config{Model: district.ModelOptions{Seed: 1, Until: until}, Days: days}, t)
	for _, s := range t.to {
		err = errors.Join(err, s.Close(ctx))
	}
	if err != nil {
		return 0, fmt.Errorf("sending the simulated district: %w", err)
	}
	for name, s := range map[string]*sender.Sender{Metergate: mgs, VictoriaMetrics: vms} {
		if st := s.Stats(); st.SamplesDropped > 0 || st.SamplesSent != t.samples {
			return 0, fmt.Errorf("%s took %d of %d samples (%d dropped)", name, st.SamplesSent, t.samples, st.SamplesDropped)
		}
	}
	return t.samples, nil
}

// timeExport streams one export, counting its lines without keeping them,
// with the serving process's peak memory and CPU over it.
func timeExport(ctx context.Context, pid int, u, token string) (ExportResult, error) {
	var res ExportResult
	resetPeak(pid)
	before, err := residentRSS(pid)
	if err != nil {
		return res, err
	}
	cpu0, err := CPUTime(pid)
	if err != nil {
		return res, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return res, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return res, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	for {
		line, err := r.ReadSlice('\n')
		res.Bytes += int64(len(line))
		if len(line) > 0 && line[len(line)-1] == '\n' {
			res.Rows++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return res, fmt.Errorf("reading the export: %w", err)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	cpu1, err := CPUTime(pid)
	if err != nil {
		return res, err
	}
	res.CPUS = (cpu1 - cpu0).Seconds()
	if res.PeakRSS, err = PeakRSS(pid); err != nil {
		return res, err
	}
	res.Growth = max(0, res.PeakRSS-before) // a collection during the export can leave it lower
	return res, nil
}

// resetPeak starts a new VmHWM for pid (writing 5 to clear_refs, Linux ≥
// 4.0); without it the peak is the process's whole life's.
func resetPeak(pid int) { _ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) }

// residentRSS is pid's resident set size (VmRSS) in bytes.
func residentRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading status of %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// ratios is metergate's figure over VictoriaMetrics's, per repetition.
func (r *ExportReport) ratios(of func(ExportResult) float64) []float64 {
	vm := map[int]ExportResult{}
	for _, x := range r.Results {
		if x.Who == VictoriaMetrics {
			vm[x.Rep] = x
		}
	}
	var out []float64
	for _, x := range r.Results {
		if o, ok := vm[x.Rep]; ok && x.Who == Metergate {
			out = append(out, of(x)/of(o))
		}
	}
	return out
}

func (r *ExportReport) medianOf(who string, of func(ExportResult) float64) float64 {
	var v []float64
	for _, x := range r.Results {
		if x.Who == who {
			v = append(v, of(x))
		}
	}
	if len(v) == 0 {
		return 0
	}
	return median(v)
}

// WriteTable prints the export rows of the bench's table: metergate's
// figure over VictoriaMetrics's of the same repetition, min / median /
// max, with the target of issue 8 (at least as fast) judged on the median;
// then the medians of the absolute figures.
func (r *ExportReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shape\tmetergate\tfigure\t÷ VictoriaMetrics 1.79.5\ttarget\tmet (median)")
	t := r.ratios(func(x ExportResult) float64 { return x.Seconds })
	met := "-"
	if len(t) > 0 {
		met = yesNo(median(t) <= 1)
	}
	fmt.Fprintf(tw, "export\tmetergate\tseconds per export of %d days (uc4, gated)\t%s\tVM ≤1.0×\t%s\n", r.Days, spread(t), met)
	// Repetition 1 is metergate's first export after its start: no
	// sealed block kept yet, every block read from storage.
	first := &ExportReport{Days: r.Days}
	for _, x := range r.Results {
		if x.Rep == 1 {
			first.Results = append(first.Results, x)
		}
	}
	if f := first.ratios(func(x ExportResult) float64 { return x.Seconds }); len(f) == 1 {
		fmt.Fprintf(tw, "export\tmetergate\tseconds of the first export after a start (repetition 1)\t%s\tVM ≤1.0×\t%s\n", strconv.FormatFloat(f[0], 'g', 3, 64), yesNo(f[0] <= 1))
	}
	fmt.Fprintf(tw, "export\tmetergate\tCPU seconds of the serving process\t%s\t-\t-\n", spread(r.ratios(func(x ExportResult) float64 { return x.CPUS })))
	fmt.Fprintf(tw, "export\tmetergate\tpeak RSS during the export\t%s\t-\t-\n", spread(r.ratios(func(x ExportResult) float64 { return float64(x.PeakRSS) })))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "Medians: ")
	var parts []string
	for _, who := range []string{Metergate, VictoriaMetrics} {
		parts = append(parts, fmt.Sprintf("%s %.0f rows, %.1f MB in %.2f s (CPU %.2f s), peak RSS %.0f MiB (+%.0f MiB)", who,
			r.medianOf(who, func(x ExportResult) float64 { return float64(x.Rows) }),
			r.medianOf(who, func(x ExportResult) float64 { return float64(x.Bytes) })/1e6,
			r.medianOf(who, func(x ExportResult) float64 { return x.Seconds }),
			r.medianOf(who, func(x ExportResult) float64 { return x.CPUS }),
			r.medianOf(who, func(x ExportResult) float64 { return float64(x.PeakRSS) })/(1<<20),
			r.medianOf(who, func(x ExportResult) float64 { return float64(x.Growth) })/(1<<20)))
	}
	fmt.Fprintln(w, strings.Join(parts, "; ")+".")
	fmt.Fprintf(w, "metergate evaluates the privacy policy for every row (members, contributing sets, Venn cells, dominance,\n"+
		"quartiles) and syncs its audit records; VictoriaMetrics streams the %d raw daily index samples behind them.\n", r.Samples)
	return nil
}

// sealedReads returns metergate's block reads served from kept sealed
// blocks and all its block reads so far (metergate_gate_sealed_reads_total).
func sealedReads(ctx context.Context, base, token string) ([2]int64, error) {
	var out [2]int64
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, fmt.Errorf("scraping metergate: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("scraping metergate: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "metergate_gate_sealed_reads_total{") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return out, fmt.Errorf("scraping metergate: %q: %w", line, err)
		}
		if strings.Contains(name, `result="hit"`) {
			out[0] += int64(v)
		}
		out[1] += int64(v)
	}
	return out, sc.Err()
}
