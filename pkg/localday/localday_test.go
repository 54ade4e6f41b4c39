package localday

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLength(t *testing.T) {
	for _, tc := range []struct {
		day  string
		want time.Duration
	}{
		{"2025-03-30", 23 * time.Hour}, // spring forward
		{"2025-10-26", 25 * time.Hour}, // fall back
		{"2025-06-15", 24 * time.Hour},
		{"2024-02-29", 24 * time.Hour},
	} {
		d, err := Parse(tc.day)
		require.NoError(t, err)
		require.Equal(t, tc.want, d.Length(), tc.day)
		require.Equal(t, tc.day, d.String())
	}
}

func TestArithmetic(t *testing.T) {
	d, _ := Parse("2025-03-29")
	require.Equal(t, "2025-03-31", d.AddDays(2).String())
	require.Equal(t, "2025-03-28", d.AddDays(-1).String())
	e, _ := Parse("2025-10-27")
	require.Equal(t, 212, e.Sub(d))
	require.True(t, d.Before(e))
	// The instant 23:30 UTC on 2025-03-29 is already 00:30 on 2025-03-30 in Paris.
	require.Equal(t, "2025-03-30", Of(time.Date(2025, 3, 29, 23, 30, 0, 0, time.UTC)).String())
	require.Equal(t, "2025-10-25", LastPublishable(time.Date(2025, 10, 27, 0, 0, 0, 0, Paris)).String())
	require.Equal(t, "2025-10-24", LastPublishable(time.Date(2025, 10, 26, 23, 59, 0, 0, Paris)).String())
}

// Before compares normalised days field by field and anything else as the
// instants it stands for; both must agree with comparing the instants.
func TestBeforeAgreesWithInstants(t *testing.T) {
	var days []Day
	for d := (Day{2023, time.December, 25}); d.Before(Day{2025, time.March, 5}); d = d.AddDays(1) {
		days = append(days, d)
	}
	days = append(days, Day{}, Day{2024, time.February, 30}, Day{2023, time.February, 29}, Day{2024, time.March, 0},
		Day{2024, time.April, 31}, Day{2024, time.December, 32}, Day{2024, 13, 1})
	for _, a := range days {
		for _, b := range []Day{days[0], days[66], days[67], days[68], days[400], {}, {2024, time.February, 30}, {2024, time.March, 1}} {
			if got, want := a.Before(b), a.Start().Before(b.Start()); got != want {
				t.Fatalf("%+v.Before(%+v) = %v, want %v", a, b, got, want)
			}
		}
	}
	if !(Day{2024, time.February, 29}).valid() || (Day{2023, time.February, 29}).valid() || (Day{1900, time.February, 29}).valid() || !(Day{2000, time.February, 29}).valid() {
		t.Fatal("leap years")
	}
}
