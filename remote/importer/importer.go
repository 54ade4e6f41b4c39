// Package importer sends Enedis history files (pkg/enedis) to a metergate
// server over remote-write, so that imported data goes through the same
// catalogue validation and consent checks as live data.
//
// Every file given (a folder's .csv and .json files included) is parsed and
// validated before the first sample is sent: a malformed file stops the
// whole import with its line and reason, and nothing is written.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/enedis"
)

// Writer is a remote-write client (remote/sender.Sender).
type Writer interface {
	Write(ctx context.Context, series []prompb.TimeSeries) error
	Flush(ctx context.Context) error
}

// Load parses every file of paths (a folder means its .csv and .json
// files, recursively, in name order). It returns every error found, not
// only the first, so that one run tells what to fix.
func Load(paths []string, o enedis.Options) ([]*enedis.File, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ext := strings.ToLower(filepath.Ext(path))
			if !d.IsDir() && (ext == ".csv" || ext == ".json") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("import: listing %s: %w", p, err)
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, errors.New("import: no .csv or .json file given")
	}
	var out []*enedis.File
	var errs []error
	for _, path := range files {
		f, err := enedis.ReadFile(path, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, f)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("import refused, nothing was sent:\n%w", errors.Join(errs...))
	}
	return out, nil
}

// maxSamplesPerSeries cuts long series into several remote-write series
// (the sender batches by series), so that a year of curves is not one
// request.
const maxSamplesPerSeries = 5000

// Send writes the files' series through w and waits until they are sent.
// It checks every series against the catalogue first (a parser bug must
// not reach the server). It returns the number of samples handed to w.
func Send(ctx context.Context, w Writer, files []*enedis.File) (int, error) {
	var batch []prompb.TimeSeries
	for _, f := range files {
		for _, s := range f.Series {
			ls := labels.FromStrings(labels.MetricName, s.Metric, catalogue.LabelRMP, s.PRM)
			if _, err := catalogue.Validate(ls); err != nil {
				return 0, fmt.Errorf("%s: %w", f.Name, err)
			}
		}
	}
	n := 0
	for _, f := range files {
		for _, s := range f.Series {
			lbls := []prompb.Label{{Name: labels.MetricName, Value: s.Metric}, {Name: catalogue.LabelRMP, Value: s.PRM}}
			for start := 0; start < len(s.Samples); start += maxSamplesPerSeries {
				end := min(start+maxSamplesPerSeries, len(s.Samples))
				ts := prompb.TimeSeries{Labels: lbls, Samples: make([]prompb.Sample, 0, end-start)}
				for _, x := range s.Samples[start:end] {
					ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: x.T.UnixMilli(), Value: x.V})
				}
				batch = append(batch, ts)
				n += end - start
			}
		}
	}
	if err := w.Write(ctx, batch); err != nil {
		return 0, fmt.Errorf("sending: %w", err)
	}
	if err := w.Flush(ctx); err != nil {
		return n, fmt.Errorf("sending: %w", err)
	}
	return n, nil
}
