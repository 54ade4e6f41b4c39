package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
)

// District is the simulated district's daily data in an embedded TSDB: the
// fixture of the dashboard bench.
type District struct {
	DB       *store.Embedded
	Registry *registry.Registry
	// First and Until are the first and last simulated days.
	First, Until localday.Day
	Samples      int64
}

// Close closes the TSDB.
func (d *District) Close() error { return d.DB.Close() }

// DailyAppender is a district.Writer that appends the simulator's daily
// meter series (the index registers and the EV session counters) straight
// into a TSDB: a bench fixture of a year needs the data, not remote-write's
// cost, which `metergate bench -modes live,dplus1` measures on its own.
// Curves and concentrator gauges are left out: no panel of the
// neighbourhood dashboard and no daily export reads them.
type DailyAppender struct {
	db      storage.Appendable
	samples int64
}

// NewDailyAppender appends to db.
func NewDailyAppender(db storage.Appendable) *DailyAppender { return &DailyAppender{db: db} }

// Samples is the number of samples appended so far.
func (w *DailyAppender) Samples() int64 { return w.samples }

// Write appends one simulated delivery.
func (w *DailyAppender) Write(ctx context.Context, series []prompb.TimeSeries) error {
	app := w.db.Appender(ctx)
	b := labels.NewScratchBuilder(8)
	for _, s := range series {
		name := ""
		b.Reset()
		for _, l := range s.Labels {
			b.Add(l.Name, l.Value)
			if l.Name == labels.MetricName {
				name = l.Value
			}
		}
		m, ok := catalogue.Lookup(name)
		if !ok || m.Subject != catalogue.Meter || m.Nature != catalogue.Daily {
			continue
		}
		b.Sort()
		ls := b.Labels()
		var ref storage.SeriesRef
		for _, x := range s.Samples {
			r, err := app.Append(ref, ls, x.Timestamp, x.Value)
			if err != nil {
				_ = app.Rollback()
				return fmt.Errorf("appending %s at %d: %w", ls, x.Timestamp, err)
			}
			ref = r
			w.samples++
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// Flush has nothing to do: Write commits.
func (w *DailyAppender) Flush(context.Context) error { return nil }

// fixture is written next to a complete TSDB, so that later runs reuse it
// rather than simulate and compact the same two years again (minutes).
type fixture struct {
	Until   string `json:"until"`
	Days    int    `json:"days"`
	Samples int64  `json:"samples"`
}

// BuildDistrict simulates days of the whole district (pkg/district: 7,692
// meters, 30 clusters, 18 producers, 5 EV stations) ending with until, into
// a fresh embedded TSDB in dir opened with the server's storage options,
// then compacts it into blocks, as a server holding that history would have.
// A TSDB a previous call completed in dir for the same days is reused: the
// simulation is deterministic (seed 1).
func BuildDistrict(ctx context.Context, dir string, until localday.Day, days int, log io.Writer) (*District, error) {
	reg, err := district.Generate(district.Options{Seed: 1, Until: until})
	if err != nil {
		return nil, fmt.Errorf("generating the district: %w", err)
	}
	marker := filepath.Join(dir, "fixture.json")
	opts := store.Options{Retention: 5 * 365 * 24 * time.Hour}
	var fx fixture
	if b, err := os.ReadFile(marker); err == nil && json.Unmarshal(b, &fx) == nil && fx.Until == until.String() && fx.Days == days {
		db, err := store.OpenEmbedded(dir, opts, nil, nil)
		if err != nil {
			return nil, err
		}
		if log != nil {
			fmt.Fprintf(log, "[%s] district: reusing %s (%d daily samples, %d days, %d blocks)\n",
				time.Now().Format(time.TimeOnly), dir, fx.Samples, days, len(db.Blocks()))
		}
		return &District{DB: db, Registry: reg, First: until.AddDays(1 - days), Until: until, Samples: fx.Samples}, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", dir, err)
	}
	db, err := store.OpenEmbedded(dir, store.Options{
		Retention: 5 * 365 * 24 * time.Hour,
		// The simulator delivers day after day, but each day's readings
		// are stamped before the previous day's collection gauges: a wide
		// window spares the fixture any question of order.
		OutOfOrderWindow: time.Duration(days+2) * 24 * time.Hour,
	}, nil, nil)
	if err != nil {
		return nil, err
	}
	// No background compaction while loading: it would compete for the
	// CPU and race the out-of-order head; the head is compacted once, below.
	db.DisableCompactions()
	w := NewDailyAppender(db)
	began := time.Now()
	_, err = district.Simulate(ctx, reg, district.Config{
		Model: district.ModelOptions{Seed: 1, Until: until}, Days: days,
		Now: func() time.Time { return until.AddDays(2).Start() },
	}, w)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("simulating %d days: %w", days, err)
	}
	loaded := time.Since(began)
	db.EnableCompactions()
	if err := db.Compact(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("compacting the district's TSDB: %w", err)
	}
	if log != nil {
		fmt.Fprintf(log, "[%s] district: %d daily samples of %d meters, %d days, loaded in %s, compacted in %s into %d blocks\n",
			time.Now().Format(time.TimeOnly), w.samples, len(reg.Meters), days, loaded.Round(time.Millisecond),
			(time.Since(began) - loaded).Round(time.Millisecond), len(db.Blocks()))
	}
	b, err := json.Marshal(fixture{Until: until.String(), Days: days, Samples: w.samples})
	if err == nil {
		err = os.WriteFile(marker, b, 0o644)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("writing %s: %w", marker, err)
	}
	return &District{DB: db, Registry: reg, First: until.AddDays(1 - days), Until: until, Samples: w.samples}, nil
}
