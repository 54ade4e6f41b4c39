package enedis

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/catalogue"
)

// FuzzParse feeds the importer's parser arbitrary files, seeded with the
// real Enedis exports and the Data Connect fixtures. Whatever it gets, it
// must not panic, must refuse with an *Error that names the file, and what
// it accepts must be series the catalogue accepts, in time order, with no
// value that is not a number.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../../../shared/data/enedis-sge/*.csv")
	fixtures, _ := filepath.Glob("testdata/*.json")
	for _, p := range append(seeds, fixtures...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 4<<10 {
			b = b[:4<<10] // a prefix: the fuzzer mutates small inputs faster
		}
		f.Add(b)
	}
	f.Add([]byte("Identifiant PRM;Type de donnees\n"))
	f.Add([]byte(`{"meter_reading":{"usage_point_id":"12345678901234","interval_reading":[{"value":"12","date":"2024-01-01"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz.csv", b, Options{})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz.csv" {
				t.Fatalf("refusal is not an *Error naming the file: %v", err)
			}
			return
		}
		for _, s := range file.Series {
			ls := labels.FromStrings("__name__", s.Metric, catalogue.LabelRMP, s.PRM)
			if _, err := catalogue.Validate(ls); err != nil {
				t.Fatalf("accepted a series the catalogue refuses: %v", err)
			}
			for i, p := range s.Samples {
				if p.V != p.V {
					t.Fatalf("NaN value accepted at %s", p.T)
				}
				if i > 0 && !s.Samples[i-1].T.Before(p.T) {
					t.Fatalf("samples of %s not in strict time order at %s", s.PRM, p.T)
				}
			}
		}
	})
}
