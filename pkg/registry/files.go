package registry

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
)

// File names inside a registry directory.
const (
	MetersFile        = "meters.csv"
	ConcentratorsFile = "concentrators.csv"
	ClustersFile      = "clusters.csv"
	BuildingsFile     = "buildings.csv"
	StationsFile      = "stations.csv"
	ConsentsFile      = "consents.csv"
	PerimetersFile    = "perimeters.yaml"
)

var (
	meterHeader        = []string{"prm", "concentrator", "building", "cluster", "usage", "producer", "peak_kw", "ev_station", "common_area", "installed", "removed"}
	concentratorHeader = []string{"id", "cluster", "plc", "installed"}
	clusterHeader      = []string{"id", "name", "inhabitants"}
	buildingHeader     = []string{"id", "name", "cluster", "kind", "households", "surface_m2", "inhabitants", "target_kwh_per_m2_year"}
	stationHeader      = []string{"id", "name", "operator"}
	consentHeader      = []string{"prm", "use_case", "granted", "revoked"}
)

// Load reads a registry directory. Missing optional files (stations,
// consents, buildings, perimeters) mean none; meters.csv is required.
func Load(dir string) (*Registry, error) {
	r := &Registry{}
	err := readCSV(filepath.Join(dir, MetersFile), meterHeader, true, func(f fields) error {
		m := Meter{PRM: f.str("prm"), Concentrator: f.str("concentrator"), Building: f.str("building"),
			Cluster: f.str("cluster"), Usage: f.str("usage"), Producer: f.str("producer"),
			PeakKW: f.float("peak_kw"), EVStation: f.str("ev_station"), CommonArea: f.bool("common_area"),
			Installed: f.day("installed"), Removed: f.day("removed")}
		if !catalogue.ValidRMP(m.PRM) {
			f.fail("prm %q is not 14 digits", m.PRM)
		}
		if m.Usage != "residential" && m.Usage != "business" {
			f.fail("usage must be residential or business, not %q", m.Usage)
		}
		if m.Producer != "" && m.Producer != "pv" && m.Producer != "cogeneration" {
			f.fail("producer must be empty, pv or cogeneration, not %q", m.Producer)
		}
		r.Meters = append(r.Meters, m)
		return f.err
	})
	if err != nil {
		return nil, err
	}
	err = readCSV(filepath.Join(dir, ConcentratorsFile), concentratorHeader, false, func(f fields) error {
		r.Concentrators = append(r.Concentrators, Concentrator{ID: f.str("id"), Cluster: f.str("cluster"), PLC: f.str("plc"), Installed: f.day("installed")})
		return f.err
	})
	if err != nil {
		return nil, err
	}
	err = readCSV(filepath.Join(dir, ClustersFile), clusterHeader, false, func(f fields) error {
		r.Clusters = append(r.Clusters, Cluster{ID: f.str("id"), Name: f.str("name"), Inhabitants: f.int("inhabitants")})
		return f.err
	})
	if err != nil {
		return nil, err
	}
	err = readCSV(filepath.Join(dir, BuildingsFile), buildingHeader, false, func(f fields) error {
		r.Buildings = append(r.Buildings, Building{ID: f.str("id"), Name: f.str("name"), Cluster: f.str("cluster"),
			Kind: f.str("kind"), Households: f.int("households"), SurfaceM2: f.float("surface_m2"),
			Inhabitants: f.int("inhabitants"), TargetKWhPerM2Year: f.float("target_kwh_per_m2_year")})
		return f.err
	})
	if err != nil {
		return nil, err
	}
	err = readCSV(filepath.Join(dir, StationsFile), stationHeader, false, func(f fields) error {
		r.Stations = append(r.Stations, Station{ID: f.str("id"), Name: f.str("name"), Operator: f.str("operator")})
		return f.err
	})
	if err != nil {
		return nil, err
	}
	err = readCSV(filepath.Join(dir, ConsentsFile), consentHeader, false, func(f fields) error {
		c := Consent{PRM: f.str("prm"), UseCase: UseCase(f.str("use_case")), Granted: f.time("granted"), Revoked: f.time("revoked")}
		if c.Granted.IsZero() {
			f.fail("granted is required")
		}
		r.Consents = append(r.Consents, c)
		return f.err
	})
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, PerimetersFile)); err == nil {
		var doc struct {
			Perimeters []Perimeter `yaml:"perimeters"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, PerimetersFile), err)
		}
		r.Perimeters = doc.Perimeters
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading perimeters: %w", err)
	}
	reg, err := New(r)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	return reg, nil
}

// Save writes the registry into dir (created if needed), one file per table.
// Files are written to a temporary name and renamed, so a reader never sees
// a half-written table.
func Save(dir string, r *Registry) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating registry directory: %w", err)
	}
	var rows [][]string
	for _, m := range r.Meters {
		rows = append(rows, []string{m.PRM, m.Concentrator, m.Building, m.Cluster, m.Usage, m.Producer,
			fmtFloat(m.PeakKW), m.EVStation, fmtBool(m.CommonArea), fmtDay(m.Installed), fmtDay(m.Removed)})
	}
	if err := writeCSV(filepath.Join(dir, MetersFile), meterHeader, rows); err != nil {
		return err
	}
	rows = nil
	for _, c := range r.Concentrators {
		rows = append(rows, []string{c.ID, c.Cluster, c.PLC, fmtDay(c.Installed)})
	}
	if err := writeCSV(filepath.Join(dir, ConcentratorsFile), concentratorHeader, rows); err != nil {
		return err
	}
	rows = nil
	for _, c := range r.Clusters {
		rows = append(rows, []string{c.ID, c.Name, strconv.Itoa(c.Inhabitants)})
	}
	if err := writeCSV(filepath.Join(dir, ClustersFile), clusterHeader, rows); err != nil {
		return err
	}
	rows = nil
	for _, b := range r.Buildings {
		rows = append(rows, []string{b.ID, b.Name, b.Cluster, b.Kind, strconv.Itoa(b.Households), fmtFloat(b.SurfaceM2),
			strconv.Itoa(b.Inhabitants), fmtFloat(b.TargetKWhPerM2Year)})
	}
	if err := writeCSV(filepath.Join(dir, BuildingsFile), buildingHeader, rows); err != nil {
		return err
	}
	rows = nil
	for _, s := range r.Stations {
		rows = append(rows, []string{s.ID, s.Name, s.Operator})
	}
	if err := writeCSV(filepath.Join(dir, StationsFile), stationHeader, rows); err != nil {
		return err
	}
	rows = nil
	for _, c := range r.Consents {
		rows = append(rows, []string{c.PRM, string(c.UseCase), fmtTime(c.Granted), fmtTime(c.Revoked)})
	}
	if err := writeCSV(filepath.Join(dir, ConsentsFile), consentHeader, rows); err != nil {
		return err
	}
	b, err := yaml.Marshal(struct {
		Perimeters []Perimeter `yaml:"perimeters"`
	}{r.Perimeters})
	if err != nil {
		return fmt.Errorf("encoding perimeters: %w", err)
	}
	return writeAtomic(filepath.Join(dir, PerimetersFile), func(w io.Writer) error { _, err := w.Write(b); return err })
}

func fmtFloat(f float64) string {
	if f == 0 {
		return ""
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func fmtBool(b bool) string {
	if b {
		return "true"
	}
	return ""
}

func fmtDay(d localday.Day) string {
	if d.IsZero() {
		return ""
	}
	return d.String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(localday.Paris).Format(time.RFC3339)
}

func writeCSV(path string, header []string, rows [][]string) error {
	return writeAtomic(path, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(header); err != nil {
			return err
		}
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	})
}

func writeAtomic(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", path, err)
	}
	return nil
}

// fields is one CSV row addressed by column name; parse errors are kept in
// err with the file and line, so a bad registry names the offending cell.
type fields struct {
	*row
}

type row struct {
	path string
	line int
	col  map[string]int
	rec  []string
	err  error
}

func (f fields) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("%s:%d: %s", f.path, f.line, fmt.Sprintf(format, args...))
	}
}

func (f fields) str(name string) string {
	i, ok := f.col[name]
	if !ok || i >= len(f.rec) {
		return ""
	}
	return strings.TrimSpace(f.rec[i])
}

func (f fields) int(name string) int {
	s := f.str(name)
	if s == "" {
		return 0
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		f.fail("%s: %q is not an integer", name, s)
	}
	return v
}

func (f fields) float(name string) float64 {
	s := f.str(name)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		f.fail("%s: %q is not a number", name, s)
	}
	return v
}

func (f fields) bool(name string) bool {
	s := f.str(name)
	if s == "" {
		return false
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		f.fail("%s: %q is not true or false", name, s)
	}
	return v
}

func (f fields) day(name string) localday.Day {
	s := f.str(name)
	if s == "" {
		return localday.Day{}
	}
	d, err := localday.Parse(s)
	if err != nil {
		f.fail("%s: %q is not a YYYY-MM-DD date", name, s)
	}
	return d
}

// time reads RFC 3339, or a bare date meaning local midnight in Paris.
func (f fields) time(name string) time.Time {
	s := f.str(name)
	if s == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t
	}
	if d, err := localday.Parse(s); err == nil {
		return d.Start()
	}
	f.fail("%s: %q is neither RFC 3339 nor YYYY-MM-DD", name, s)
	return time.Time{}
}

func readCSV(path string, want []string, required bool, each func(fields) error) error {
	fh, err := os.Open(path)
	if err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("reading registry: %w", err)
	}
	defer fh.Close()
	cr := csv.NewReader(fh)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("%s: reading header: %w", path, err)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, w := range want[:1] {
		if _, ok := col[w]; !ok {
			return fmt.Errorf("%s: header lacks the column %q (want %s)", path, w, strings.Join(want, ","))
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		line, _ := cr.FieldPos(0)
		if err := each(fields{&row{path: path, line: line, col: col, rec: rec}}); err != nil {
			return err
		}
	}
}
