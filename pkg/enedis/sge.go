package enedis

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
)

// SGE "historique de mesures" (HDM) CSV: sections, each a metadata header
// row ("Identifiant PRM;Type de donnees;…"), its values, a column header
// ("Horodate;…") and data rows. Index exports carry a calendar section
// ("Periode;…") and a daily maximum power section after the index section.

const (
	sectionHeader  = "Identifiant PRM"
	calendarHeader = "Periode"
	typeCurve      = "Courbe de charge"
	typeIndex      = "Index"
	dailyReading   = "Arrêté quotidien"
	totalRegister  = "EAS T"
)

type section struct {
	line   int
	prm    string
	kind   string
	flow   catalogue.Flow
	unit   string
	stepHd time.Duration // "Pas en minutes" of the header, 0 when empty
}

type curvePoint struct {
	line int
	t    time.Time
	v    float64
	gap  bool
}

func parseSGE(name string, r io.Reader) (*File, error) {
	cr := csv.NewReader(r)
	cr.Comma = ';'
	cr.FieldsPerRecord = -1
	f := &File{Name: name, Format: "sge-hdm"}
	fail := func(line int, format string, args ...any) error {
		return &Error{File: name, Line: line, Reason: fmt.Sprintf(format, args...)}
	}
	var (
		sec     *section
		columns map[string]int // column header of the section
		skip    bool           // a section that is read but not kept
		curve   []curvePoint
		index   = map[string]map[localday.Day]indexReading{} // metric → day → reading
		series  = map[string]*Series{}                       // PRM+metric → series
		pending []string                                     // awaiting the metadata values row
	)
	flush := func() error {
		if sec == nil || sec.kind != typeCurve {
			return nil
		}
		s, err := curveSeries(name, sec, curve)
		if err != nil {
			return err
		}
		key := s.PRM + "/" + s.Metric
		if prev := series[key]; prev != nil {
			merged, err := mergeSamples(prev.Samples, s.Samples)
			if err != nil {
				return fail(sec.line, "%v", err)
			}
			prev.Samples = merged
		} else {
			series[key] = &s
		}
		curve = nil
		return nil
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fail(pe.Line, "%v", pe.Err)
			}
			return nil, fail(0, "%v", err)
		}
		line, _ := cr.FieldPos(0)
		first := strings.TrimSpace(rec[0])
		switch {
		case first == sectionHeader:
			if err := flush(); err != nil {
				return nil, err
			}
			pending, sec, columns, skip = rec, nil, nil, false
			continue
		case first == calendarHeader:
			if err := flush(); err != nil {
				return nil, err
			}
			f.Notes = append(f.Notes, fmt.Sprintf("line %d: supplier and distributor calendar section not imported (registers are summed in EAS T)", line))
			pending, sec, columns, skip = nil, &section{line: line, kind: calendarHeader}, nil, true
			continue
		case pending != nil:
			s, err := metadata(pending, rec, line)
			if err != nil {
				return nil, fail(line, "%v", err)
			}
			sec, pending = s, nil
			if s.kind != typeCurve && s.kind != typeIndex {
				skip = true
				f.Notes = append(f.Notes, fmt.Sprintf("line %d: section %q of %s not imported (no metric in the catalogue)", line, s.kind, s.prm))
			}
			continue
		case sec == nil:
			return nil, fail(line, "expected the metadata header %q, found %q", sectionHeader, strings.Join(rec, ";"))
		case skip:
			continue
		case columns == nil:
			if first != "Horodate" {
				return nil, fail(line, "expected the column header Horodate;…, found %q", strings.Join(rec, ";"))
			}
			columns = map[string]int{}
			for i, c := range rec {
				name := strings.TrimSpace(c)
				if _, dup := columns[name]; dup {
					// Two columns of one name: which one holds the value
					// would be a guess.
					return nil, fail(line, "column %q appears twice in the header", name)
				}
				columns[name] = i
			}
			if sec.kind == typeCurve {
				if _, ok := columns["Valeur"]; !ok || len(rec) != 2 {
					return nil, fail(line, "a load curve has the columns Horodate;Valeur")
				}
			} else if _, ok := columns[totalRegister]; !ok {
				return nil, fail(line, "an index section needs the column %s", totalRegister)
			}
			continue
		}
		if len(rec) != len(columns) {
			return nil, fail(line, "%d fields, the header has %d", len(rec), len(columns))
		}
		if sec.kind == typeCurve {
			p, err := curveRow(rec, line)
			if err != nil {
				return nil, fail(line, "%v", err)
			}
			curve = append(curve, p)
			continue
		}
		if err := indexRow(sec, columns, rec, line, index, f); err != nil {
			return nil, fail(line, "%v", err)
		}
	}
	if pending != nil {
		return nil, fail(0, "the file ends after a metadata header")
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for key, days := range index {
		prm, metric, _ := strings.Cut(key, "/")
		s := Series{PRM: prm, Metric: metric}
		for d, r := range days {
			s.Samples = append(s.Samples, Sample{T: d.Start(), V: r.v})
		}
		sortSamples(s.Samples)
		series[key] = &s
	}
	for _, s := range series {
		if len(s.Samples) > 0 {
			f.Series = append(f.Series, *s)
		}
	}
	if len(f.Series) == 0 && len(f.Notes) == 0 {
		return nil, fail(0, "no SGE section found")
	}
	sortSeries(f.Series)
	return f, nil
}

// metadata reads a section's header and values rows.
func metadata(header, values []string, line int) (*section, error) {
	col := map[string]string{}
	for i, h := range header {
		if i < len(values) {
			col[strings.TrimSpace(h)] = strings.TrimSpace(values[i])
		}
	}
	s := &section{line: line, prm: col[sectionHeader], kind: col["Type de donnees"], unit: col["Unite"]}
	if !catalogue.ValidRMP(s.prm) {
		return nil, fmt.Errorf("PRM %q is not 14 digits", s.prm)
	}
	switch col["Grandeur metier"] {
	case "Consommation":
		s.flow = catalogue.Consumption
	case "Production":
		s.flow = catalogue.Production
	default:
		return nil, fmt.Errorf("grandeur metier %q is neither Consommation nor Production", col["Grandeur metier"])
	}
	if p := col["Pas en minutes"]; p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("pas en minutes %q is not a positive integer", p)
		}
		s.stepHd = time.Duration(n) * time.Minute
	}
	if s.kind == typeCurve {
		switch s.unit {
		case "W", "kW", "Wh", "kWh":
		default:
			return nil, fmt.Errorf("load curve unit %q (W, kW, Wh or kWh)", s.unit)
		}
	}
	if s.kind == typeIndex {
		switch s.unit {
		case "", "Wh", "kWh":
		default:
			return nil, fmt.Errorf("index unit %q (Wh or kWh)", s.unit)
		}
	}
	return s, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		return t, fmt.Errorf("horodate %q is not ISO-8601 with an offset", s)
	}
	return t, nil
}

func parseValue(s string) (float64, bool, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseFloat(strings.Replace(s, ",", ".", 1), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("value %q is not a number", s)
	}
	if v < 0 {
		return 0, false, fmt.Errorf("value %s is negative", s)
	}
	return v, true, nil
}

func curveRow(rec []string, line int) (curvePoint, error) {
	t, err := parseTime(rec[0])
	if err != nil {
		return curvePoint{}, err
	}
	v, ok, err := parseValue(rec[1])
	if err != nil {
		return curvePoint{}, err
	}
	return curvePoint{line: line, t: t, v: v, gap: !ok}, nil
}

// Steps a load curve may have.
var steps = []time.Duration{5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, 60 * time.Minute}

func validStep(d time.Duration) bool {
	for _, s := range steps {
		if d == s {
			return true
		}
	}
	return false
}

// curveSeries checks a curve section and converts it to watts. The step of
// each point is the shorter distance to a neighbour (the step changes from
// 60 to 30 minutes inside some files, and missing rows leave longer
// distances); an isolated point takes the header's step.
func curveSeries(name string, sec *section, pts []curvePoint) (Series, error) {
	s := Series{PRM: sec.prm, Metric: curveMetric(sec.flow)}
	for i, p := range pts {
		if i > 0 {
			d := p.t.Sub(pts[i-1].t)
			if d <= 0 {
				return s, &Error{File: name, Line: p.line, Reason: fmt.Sprintf("horodate %s is not after the previous one", p.t.Format(time.RFC3339))}
			}
			if d%(5*time.Minute) != 0 {
				return s, &Error{File: name, Line: p.line, Reason: fmt.Sprintf("horodate %s is %s after the previous one, not a multiple of 5 minutes", p.t.Format(time.RFC3339), d)}
			}
		}
		if p.gap {
			continue
		}
		step := time.Duration(0)
		if i > 0 {
			step = p.t.Sub(pts[i-1].t)
		}
		if i+1 < len(pts) {
			if n := pts[i+1].t.Sub(p.t); step == 0 || n < step {
				step = n
			}
		}
		if !validStep(step) {
			step = sec.stepHd
		}
		v := p.v
		switch sec.unit {
		case "kW":
			v *= 1000
		case "Wh", "kWh":
			if step == 0 {
				return s, &Error{File: name, Line: p.line, Reason: "energy per step without a known step: cannot convert to watts"}
			}
			if sec.unit == "kWh" {
				v *= 1000
			}
			v = v * float64(time.Hour) / float64(step)
		}
		s.Samples = append(s.Samples, Sample{T: p.t, V: v})
	}
	return s, nil
}

type indexReading struct {
	line int
	v    float64
}

// indexRow reads a daily index row. The day is the date written in the
// horodate: SGE stamps the reading at the local midnight that opens that
// day in summer (…T00:00:00+02:00) but writes …T23:00:00+01:00 on the same
// date in winter, an hour short of the day's end and 23 hours after its
// start. The load curves of the same meter show which is meant: the index
// difference between two rows equals the curve's energy over the local day
// named by the first row's date, on winter and summer days alike (checked
// by TestSGEIndexMatchesCurve). So the reading is stored at the local
// midnight opening that date, where the gate reads it; a date that comes
// twice (the autumn change writes both forms) must carry the same value.
func indexRow(sec *section, columns map[string]int, rec []string, line int, index map[string]map[localday.Day]indexReading, f *File) error {
	raw := strings.TrimSpace(rec[columns["Horodate"]])
	t, err := parseTime(raw)
	if err != nil {
		return err
	}
	if i, ok := columns["Type de releve"]; ok && strings.TrimSpace(rec[i]) != dailyReading {
		f.Notes = append(f.Notes, fmt.Sprintf("line %d: reading type %q not imported (only %q)", line, rec[i], dailyReading))
		return nil
	}
	clock := t.Format("15:04:05")
	if clock != "00:00:00" && clock != "23:00:00" {
		return fmt.Errorf("daily index stamped at %s, not at a midnight", raw)
	}
	d, err := localday.Parse(raw[:10])
	if err != nil {
		return err
	}
	v, ok, err := parseValue(rec[columns[totalRegister]])
	if err != nil {
		return fmt.Errorf("%s: %w", totalRegister, err)
	}
	if !ok {
		return nil // a gap
	}
	// Only the total is stored (the catalogue has one register per flow);
	// supplier (F) and distributor (D) registers only check it.
	for _, group := range []string{"EAS F", "EAS D"} {
		sum, any := 0.0, false
		for n := 1; n <= 10; n++ {
			i, ok := columns[fmt.Sprintf("%s%d", group, n)]
			if !ok {
				continue
			}
			if x, ok, err := parseValue(rec[i]); err != nil {
				return fmt.Errorf("%s%d: %w", group, n, err)
			} else if ok {
				sum, any = sum+x, true
			}
		}
		if any && sum != v {
			f.Notes = append(f.Notes, fmt.Sprintf("line %d: %s registers sum to %v, %s is %v; %s kept", line, group, sum, totalRegister, v, totalRegister))
		}
	}
	if sec.unit == "kWh" {
		v *= 1000
	}
	key := sec.prm + "/" + indexMetric(sec.flow)
	if index[key] == nil {
		index[key] = map[localday.Day]indexReading{}
	}
	if prev, dup := index[key][d]; dup && prev.v != v {
		return fmt.Errorf("day %s already read %v at line %d, now %v", d, prev.v, prev.line, v)
	}
	index[key][d] = indexReading{line: line, v: v}
	return nil
}

func sortSamples(s []Sample) {
	slices.SortFunc(s, func(a, b Sample) int { return a.T.Compare(b.T) })
}

// mergeSamples joins two sections of one series (a file cut in periods);
// an instant read twice must carry the same value.
func mergeSamples(a, b []Sample) ([]Sample, error) {
	byT := map[int64]float64{}
	for _, s := range a {
		byT[s.T.UnixMilli()] = s.V
	}
	out := append([]Sample(nil), a...)
	for _, s := range b {
		if v, ok := byT[s.T.UnixMilli()]; ok {
			if v != s.V {
				return nil, fmt.Errorf("%s read twice with different values (%v, %v)", s.T.Format(time.RFC3339), v, s.V)
			}
			continue
		}
		out = append(out, s)
	}
	sortSamples(out)
	return out, nil
}
