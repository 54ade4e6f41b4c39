package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// figure is one column of a run that the table compares.
type figure struct {
	name string
	of   func(Result) float64
	// target returns the required ratio to the reference and whether
	// higher is better; ok false means no target.
	target func(mode, ref string) (limit float64, higher, ok bool)
}

var figures = []figure{
	{"ingest samples/s incl. settle", Result.IngestRate, func(mode, ref string) (float64, bool, bool) {
		switch {
		case ref == Prometheus:
			return 3, true, true
		case ref == VictoriaMetrics && mode == "dplus1":
			return 1, true, true
		}
		return 0, false, false
	}},
	{"send samples/s", Result.SendRate, nil},
	{"CPU µs/sample", Result.CPUPerSample, nil},
	{"peak RSS", func(r Result) float64 { return float64(r.PeakRSS) }, func(_, ref string) (float64, bool, bool) {
		return 1, false, ref == Prometheus
	}},
	{"disk bytes/sample as left", Result.DiskPerSample, nil},
	{"disk bytes/sample compacted", Result.CompactedPerSample, func(_, ref string) (float64, bool, bool) {
		return 2, false, ref == VictoriaMetrics
	}},
}

// ratios returns metergate's figure divided by the reference's, one per
// repetition in which both ran.
func (rep *Report) ratios(mode, mg, ref string, of func(Result) float64) []float64 {
	byRep := map[int]Result{}
	for _, r := range rep.Results {
		if r.Mode == mode && r.Receiver == ref {
			byRep[r.Rep] = r
		}
	}
	var out []float64
	for _, r := range rep.Results {
		if o, ok := byRep[r.Rep]; ok && r.Mode == mode && r.Receiver == mg {
			out = append(out, of(r)/of(o))
		}
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3g / %.3g / %.3g", slices.Min(v), median(v), slices.Max(v))
}

// WriteTable prints the one table of ratios: metergate's figures divided
// by Prometheus's and VictoriaMetrics's of the same repetition, as
// min / median / max over repetitions, with the targets judged on
// the median.
func (rep *Report) WriteTable(w io.Writer, modes []string) error {
	var mgs []string
	for _, r := range rep.Results {
		if strings.HasPrefix(r.Receiver, Metergate) && !slices.Contains(mgs, r.Receiver) {
			mgs = append(mgs, r.Receiver)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shape\tmetergate\tfigure\t÷ Prometheus 2.42\t÷ VictoriaMetrics 1.79.5\t÷ decode-only\ttarget\tmet (median)")
	for _, mode := range modes {
		for _, mg := range mgs {
			for _, f := range figures {
				cells := []string{mode, mg, f.name}
				var targets, met []string
				for _, ref := range []string{Prometheus, VictoriaMetrics} {
					v := rep.ratios(mode, mg, ref, f.of)
					cells = append(cells, spread(v))
					if f.target == nil {
						continue
					}
					limit, higher, ok := f.target(mode, ref)
					if !ok {
						continue
					}
					op := "≤"
					if higher {
						op = "≥"
					}
					targets = append(targets, fmt.Sprintf("%s %s%.1f×", short(ref), op, limit))
					if len(v) > 0 {
						m := median(v)
						met = append(met, yesNo(higher && m >= limit || !higher && m <= limit))
					}
				}
				cells = append(cells, rep.decodeCell(mode, mg, f.name))
				cells = append(cells, orDash(strings.Join(targets, ", ")), orDash(strings.Join(met, ", ")))
				fmt.Fprintln(tw, strings.Join(cells, "\t"))
			}
		}
	}
	if len(rep.GateRatios) > 0 {
		m := median(rep.GateRatios)
		fmt.Fprintf(tw, "query\tgate\tgated ÷ raw time per query (BenchmarkGateOverhead)\t%s\t\t\t≤1.3×\t%s\n", spread(rep.GateRatios), yesNo(m <= 1.3))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Ratios are metergate ÷ reference of the same repetition, min / median / max; \"÷ decode-only\" is metergate's CPU per sample")
	fmt.Fprintln(w, "divided by the CPU per sample of snappy + protobuf decoding alone (rwbench, one core), and its ingest rate divided by that decode rate.")
	var other []float64
	for _, r := range rep.Results {
		other = append(other, r.OtherCores)
	}
	if len(other) > 0 {
		fmt.Fprintf(w, "Other processes used %s cores (min / median / max over runs) while rwbench sent: figures from a busy machine are noisier.\n", spread(other))
	}
	var bad []string
	for _, r := range rep.Results {
		if !r.Verified {
			bad = append(bad, fmt.Sprintf("%s %s rep %d: %s", r.Receiver, r.Mode, r.Rep, r.Problem))
		}
	}
	if len(bad) == 0 {
		fmt.Fprintf(w, "Every sample was verified in all %d runs.\n", len(rep.Results))
	} else {
		fmt.Fprintf(w, "NOT VERIFIED in %d of %d runs:\n  %s\n", len(bad), len(rep.Results), strings.Join(bad, "\n  "))
	}
	return nil
}

// decodeCell relates metergate's CPU per sample (and ingest rate) to the
// decode-only limit of the shape.
func (rep *Report) decodeCell(mode, mg, fig string) string {
	rate := rep.DecodeRate[mode]
	if rate == 0 {
		return "-"
	}
	var v []float64
	for _, r := range rep.Results {
		if r.Mode != mode || r.Receiver != mg {
			continue
		}
		switch fig {
		case "CPU µs/sample":
			v = append(v, r.CPUPerSample()/(1e6/rate))
		case "ingest samples/s incl. settle":
			v = append(v, r.IngestRate()/rate)
		default:
			return "-"
		}
	}
	return spread(v)
}

func short(ref string) string {
	if ref == Prometheus {
		return "P"
	}
	return "VM"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
