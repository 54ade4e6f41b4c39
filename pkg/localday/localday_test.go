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
