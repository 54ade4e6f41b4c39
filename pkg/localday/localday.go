// Package localday does calendar arithmetic on local days in Europe/Paris,
// the days of the Enedis daily index ("arrêté quotidien") and of the D+2 rule.
//
// A local day lasts 23, 24 or 25 hours; adding 24 hours to a timestamp is
// therefore never the right way to get to the next day. Everything here goes
// through civil dates.
package localday

import (
	"fmt"
	"time"
	_ "time/tzdata" // Europe/Paris must resolve on machines without tzdata.
)

// Paris is the time zone of the district and of the policy's days.
var Paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(fmt.Sprintf("loading Europe/Paris: %v", err))
	}
	return loc
}()

// Day is a civil date in Europe/Paris.
type Day struct {
	Year  int
	Month time.Month
	Day   int
}

// Of returns the local day that contains t.
func Of(t time.Time) Day {
	y, m, d := t.In(Paris).Date()
	return Day{y, m, d}
}

// Parse reads a day written as YYYY-MM-DD.
func Parse(s string) (Day, error) {
	t, err := time.ParseInLocation(time.DateOnly, s, Paris)
	if err != nil {
		return Day{}, fmt.Errorf("parsing day %q: %w", s, err)
	}
	return Of(t), nil
}

// Start is the first instant of the day (local midnight).
func (d Day) Start() time.Time { return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, Paris) }

// End is the first instant of the next day; the day is [Start, End).
func (d Day) End() time.Time { return d.AddDays(1).Start() }

// Length is 23, 24 or 25 hours.
func (d Day) Length() time.Duration { return d.End().Sub(d.Start()) }

// AddDays moves n calendar days (n may be negative).
func (d Day) AddDays(n int) Day {
	return Of(time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, Paris))
}

// Before reports whether d is an earlier day than e. Days made by Of,
// Parse and AddDays are normalised dates, which compare field by field;
// anything else (the zero Day, a literal such as March 32) is compared as
// the instants it stands for. The registry asks this for every meter of a
// perimeter on every day a query covers, so it must not build times.
func (d Day) Before(e Day) bool {
	if d.valid() && e.valid() {
		if d.Year != e.Year {
			return d.Year < e.Year
		}
		if d.Month != e.Month {
			return d.Month < e.Month
		}
		return d.Day < e.Day
	}
	return d.Start().Before(e.Start())
}

// valid reports whether d is a normalised date.
func (d Day) valid() bool {
	if d.Month < time.January || d.Month > time.December || d.Day < 1 {
		return false
	}
	switch d.Month {
	case time.February:
		leap := d.Year%4 == 0 && (d.Year%100 != 0 || d.Year%400 == 0)
		return d.Day <= 28 || d.Day == 29 && leap
	case time.April, time.June, time.September, time.November:
		return d.Day <= 30
	}
	return d.Day <= 31
}

// After reports whether d is a later day than e.
func (d Day) After(e Day) bool { return e.Before(d) }

// Sub returns the number of calendar days from e to d.
func (d Day) Sub(e Day) int {
	// Noon UTC of each civil date is DST-proof.
	a := time.Date(d.Year, d.Month, d.Day, 12, 0, 0, 0, time.UTC)
	b := time.Date(e.Year, e.Month, e.Day, 12, 0, 0, 0, time.UTC)
	return int(a.Sub(b).Hours() / 24)
}

// String writes the day as YYYY-MM-DD.
func (d Day) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// IsZero reports whether d is the zero Day (no date).
func (d Day) IsZero() bool { return d == Day{} }

// MarshalText writes YYYY-MM-DD.
func (d Day) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads YYYY-MM-DD.
func (d *Day) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// LastPublishable is the last day whose data may be published at now under
// the D+2 rule: day D becomes publishable at the start of local day D+2.
func LastPublishable(now time.Time) Day { return Of(now).AddDays(-2) }
