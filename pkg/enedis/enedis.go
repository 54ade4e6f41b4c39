// Package enedis reads the files Enedis gives out of its systems, so that
// history can be imported into metergate: the SGE "historique de mesures"
// CSV exports (load curves and daily indexes) and the Data Connect JSON that
// households download themselves.
//
// A file is parsed and checked whole before anything is returned: a caller
// either gets every series of the file or an error naming the line and the
// reason, never a part. Missing values are gaps (no sample), never zeros.
// The rules, and what is dropped, are in docs/exports.md.
package enedis

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/metergate/metergate/pkg/catalogue"
)

// Sample is one value at one instant.
type Sample struct {
	T time.Time
	V float64
}

// Series is the samples of one metric of one RMP, in time order.
type Series struct {
	PRM     string
	Metric  string // a catalogue metric: linky_index_wh, linky_load_curve_watts, …
	Samples []Sample
}

// File is what a file holds.
type File struct {
	Name   string
	Format string // "sge-hdm" or "data-connect"
	Series []Series
	// Notes say what was read but not kept (other sections, registers),
	// for the importer's report.
	Notes []string
}

// Samples counts the samples of every series.
func (f *File) Samples() int {
	n := 0
	for _, s := range f.Series {
		n += len(s.Samples)
	}
	return n
}

// Error is a refused file: where and why.
type Error struct {
	File   string
	Line   int // 1-based; 0 when the error is about the whole file
	Reason string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// Options of parsing.
type Options struct {
	// Flow of Data Connect files, whose JSON does not say whether it is
	// consumption or production (the endpoint it came from does):
	// catalogue.Consumption (default) or catalogue.Production.
	Flow catalogue.Flow
}

// ReadFile parses one file, recognising its format from its content.
func ReadFile(path string, o Options) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Parse(path, b, o)
}

// Parse parses a file's content; name is used in errors.
func Parse(name string, b []byte, o Options) (*File, error) {
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return parseDataConnect(name, b, o)
	}
	return parseSGE(name, bytes.NewReader(b))
}

func sortSeries(ss []Series) {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].PRM != ss[j].PRM {
			return ss[i].PRM < ss[j].PRM
		}
		return ss[i].Metric < ss[j].Metric
	})
}

// metrics of a flow.
func curveMetric(f catalogue.Flow) string {
	if f == catalogue.Production {
		return catalogue.CurveInjection
	}
	return catalogue.CurveConsumption
}

func indexMetric(f catalogue.Flow) string {
	if f == catalogue.Production {
		return catalogue.IndexInjection
	}
	return catalogue.IndexConsumption
}
