package district

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/prometheus/prompb"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// Writer receives the simulated series; remote/sender.Sender is one.
type Writer interface {
	// Write queues series; the writer may keep the slices.
	Write(ctx context.Context, series []prompb.TimeSeries) error
	// Flush returns once everything written has been sent.
	Flush(ctx context.Context) error
}

// Config of a simulation run.
type Config struct {
	Model ModelOptions // Seed, Until (default yesterday), Reconciled, MissingRate
	// Days is the number of days backfilled, ending with Model.Until.
	Days int
	// Live keeps running after the backfill: each newly finished day is
	// delivered during the next night, concentrator by concentrator, and
	// concentrator readings are sent every ReadingsEvery (default 15 min).
	Live          bool
	ReadingsEvery time.Duration
	// Progress receives one line per backfilled day (nil: none).
	Progress io.Writer
	// Now is the clock (default time.Now); live mode waits on it.
	Now func() time.Time
	// Backfilled, if set, is called once the backfill is flushed, before
	// live mode starts (the demo prints its welcome then).
	Backfilled func(Result)
}

// Result counts what a run produced.
type Result struct {
	Days    int
	Samples int64
	Elapsed time.Duration
}

// Simulate backfills cfg.Days days of the district into w, oldest first,
// as the head-end delivers them at D+1: every meter's whole day in one
// series chunk, then each concentrator's readings. With cfg.Live it then
// follows the wall clock until ctx ends.
func Simulate(ctx context.Context, reg *registry.Registry, cfg Config, w Writer) (Result, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Model.Until.IsZero() {
		cfg.Model.Until = localday.Of(cfg.Now()).AddDays(-1)
	}
	if cfg.Days <= 0 {
		return Result{}, fmt.Errorf("days to simulate must be positive, not %d", cfg.Days)
	}
	if cfg.ReadingsEvery <= 0 {
		cfg.ReadingsEvery = 15 * time.Minute
	}
	model, err := NewModel(reg, cfg.Model)
	if err != nil {
		return Result{}, err
	}
	res := Result{}
	began := time.Now()
	first := cfg.Model.Until.AddDays(1 - cfg.Days)
	for d := first; !d.After(cfg.Model.Until); d = d.AddDays(1) {
		n, err := deliverDay(ctx, model, d, w, cfg.Now())
		if err != nil {
			return res, err
		}
		res.Days++
		res.Samples += n
		res.Elapsed = time.Since(began)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "simulate: %s delivered (%d/%d days), %d samples, %.0f samples/s\n",
				d, res.Days, cfg.Days, res.Samples, float64(res.Samples)/res.Elapsed.Seconds())
		}
	}
	if err := w.Flush(ctx); err != nil {
		return res, fmt.Errorf("flushing backfill: %w", err)
	}
	res.Elapsed = time.Since(began)
	if cfg.Backfilled != nil {
		cfg.Backfilled(res)
	}
	if !cfg.Live {
		return res, nil
	}
	return res, live(ctx, model, cfg, w, &res)
}

// deliverDay sends day d of every concentrator and their readings, stamped
// at their collection time (not after now).
func deliverDay(ctx context.Context, model *Model, d localday.Day, w Writer, now time.Time) (int64, error) {
	byConc, err := model.Deliver(d)
	if err != nil {
		return 0, err
	}
	var n int64
	for c, series := range byConc {
		at := model.CollectionTime(c, d)
		if at.After(now) {
			at = now
		}
		series = append(series, model.Readings(c, d, at, at)...)
		for _, s := range series {
			n += int64(len(s.Samples))
		}
		if err := w.Write(ctx, series); err != nil {
			return n, fmt.Errorf("sending day %s: %w", d, err)
		}
	}
	return n, nil
}

// live delivers each day as it finishes, concentrator by concentrator at
// their collection times of the next night, and periodic readings.
func live(ctx context.Context, model *Model, cfg Config, w Writer, res *Result) error {
	day := cfg.Model.Until.AddDays(1)
	conc := 0
	lastCollected := make([]time.Time, len(model.reg.Concentrators))
	for c := range lastCollected {
		lastCollected[c] = model.CollectionTime(c, cfg.Model.Until)
	}
	var pending [][]prompb.TimeSeries // the day being collected
	nextReadings := cfg.Now().Add(cfg.ReadingsEvery)
	for {
		due := model.CollectionTime(conc, day)
		wake := minTime(due, nextReadings)
		if wait := wake.Sub(cfg.Now()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		now := cfg.Now()
		if !now.Before(due) {
			if pending == nil {
				var err error
				if pending, err = model.Deliver(day); err != nil {
					return err
				}
			}
			series := append(pending[conc], model.Readings(conc, day, now, now)...)
			lastCollected[conc] = now
			if err := w.Write(ctx, series); err != nil {
				return fmt.Errorf("sending day %s: %w", day, err)
			}
			for _, s := range series {
				res.Samples += int64(len(s.Samples))
			}
			if conc++; conc == len(pending) {
				res.Days++
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "simulate: %s delivered live, %d samples so far\n", day, res.Samples)
				}
				conc, pending, day = 0, nil, day.AddDays(1)
			}
		}
		if !now.Before(nextReadings) {
			var series []prompb.TimeSeries
			for c := range lastCollected {
				if lastCollected[c].Equal(now) {
					continue // just sent with its collection
				}
				series = append(series, model.Readings(c, day.AddDays(-1), now, lastCollected[c])...)
			}
			if err := w.Write(ctx, series); err != nil {
				return fmt.Errorf("sending concentrator readings: %w", err)
			}
			nextReadings = now.Add(cfg.ReadingsEvery)
		}
		if err := w.Flush(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}
