package bench

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/dashboards"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// The raw evaluation instant of a day stays after its closing midnight
// and within the window of its opening one, on 23- and 25-hour days too.
func TestRawTimeOfDay(t *testing.T) {
	for d := (localday.Day{Year: 2026, Month: time.January, Day: 1}); d.Year == 2026; d = d.AddDays(1) {
		at := rawTime(d)
		require.Equal(t, d, rawDay(at), "day %s", d)
		require.False(t, at.Before(d.End()), "day %s: %s is before its closing midnight", d, at)
		window, err := time.ParseDuration(rawWindow)
		require.NoError(t, err)
		require.True(t, at.Sub(d.Start()) < window, "day %s: its opening midnight is outside the window", d)
		require.True(t, at.Sub(d.AddDays(-1).Start()) >= window, "day %s: the midnight before it is inside the window", d)
	}
}

func TestRawRewrite(t *testing.T) {
	reg, err := registry.New(&registry.Registry{
		Meters: []registry.Meter{
			{PRM: "00000000000001", Cluster: "k01", Installed: localday.Day{Year: 2025, Month: time.January, Day: 1}},
			{PRM: "00000000000002", Cluster: "k01", Installed: localday.Day{Year: 2026, Month: time.June, Day: 1}},
			{PRM: "00000000000003", Cluster: "k02", Installed: localday.Day{Year: 2025, Month: time.January, Day: 1}},
		},
		Clusters: []registry.Cluster{{ID: "k01", Inhabitants: 10}, {ID: "k02", Inhabitants: 30}},
		Perimeters: []registry.Perimeter{
			{Name: "cluster-k01", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption", Select: registry.Selector{Clusters: []string{"k01"}}},
			{Name: "confluence", UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption", Select: registry.Selector{All: true}},
		},
	})
	require.NoError(t, err)
	from := localday.Day{Year: 2026, Month: time.March, Day: 1}.Start()
	to := localday.Day{Year: 2026, Month: time.July, Day: 1}.Start()
	rw := newRawRewriter(reg, from, to)
	got, err := rw.rewrite(`quantile(0.5, linky_consumption_daily_wh{perimeter="cluster-k01"}) * 365 / 1000`, from, to)
	require.NoError(t, err)
	// The meter installed in June is in the range; the other cluster's is not.
	require.Equal(t, `quantile(0.5, idelta(linky_index_wh{rmp=~"00000000000001|00000000000002"}[1d2h])) * 365 / 1000`, got)

	// The whole district is every meter: selected by name alone.
	got, err = rw.rewrite(`sum(linky_consumption_daily_wh{perimeter="confluence"})`, from, to)
	require.NoError(t, err)
	require.Equal(t, `sum(idelta(linky_index_wh[1d2h]))`, got)

	_, err = rw.rewrite(`sum(linky_consumption_daily_wh{perimeter="nowhere"})`, from, to)
	require.ErrorContains(t, err, "not in the registry")
	_, err = rw.rewrite(`sum(linky_index_wh{perimeter="cluster-k01"})`, from, to)
	require.ErrorContains(t, err, "not a derived daily metric")

	q, err := rw.raw(dashboards.Query{RefID: "A", QueryType: dashboards.UC4, Metric: "self_consumed", Perimeter: "cluster-k01"}, from, to)
	require.NoError(t, err)
	require.Contains(t, q.Expr, "idelta(producer_generation_index_wh{")
	require.Contains(t, q.Expr, ") - sum(idelta(linky_injection_index_wh{")
	// The first point is the day closed by the first midnight in range.
	require.Equal(t, localday.Day{Year: 2026, Month: time.February, Day: 28}, rawDay(q.Start))
	require.Equal(t, localday.Day{Year: 2026, Month: time.June, Day: 30}, rawDay(q.End))
}

// Every panel of the neighbourhood dashboard has a raw equivalent: a
// panel added without one fails here, not in the middle of a bench run.
func TestDashboardPanelsHaveRawQueries(t *testing.T) {
	reg, err := registry.New(&registry.Registry{
		Meters:   []registry.Meter{{PRM: "00000000000001", Cluster: "k01", Producer: "pv"}},
		Clusters: []registry.Cluster{{ID: "k01", Inhabitants: 10}},
	})
	require.NoError(t, err)
	for _, name := range []string{"confluence", "producers"} {
		reg.Perimeters = append(reg.Perimeters, registry.Perimeter{Name: name, UseCase: registry.UC4, Audience: registry.Public, Flow: "consumption", Select: registry.Selector{All: true}})
	}
	for k := 1; k <= 30; k++ {
		id := "k" + strconv.Itoa(100 + k)[1:]
		reg.Perimeters = append(reg.Perimeters, registry.Perimeter{Name: "cluster-" + id, UseCase: registry.UC4, Audience: registry.Public,
			Flow: "consumption", Select: registry.Selector{Clusters: []string{id}}})
		if k%2 == 0 {
			reg.Perimeters = append(reg.Perimeters, registry.Perimeter{Name: "households-" + id, UseCase: registry.UC4, Audience: registry.Public,
				Flow: "consumption", Select: registry.Selector{Clusters: []string{id}, Usage: "residential"}})
		}
	}
	// The plugin lists the perimeters the token may address.
	resolve := func(query, regex string) ([]string, error) {
		require.Equal(t, "perimeter(uc4)", query, "the bench resolves the variable the dashboard has")
		return applyRegex(reg.PerimeterNames(), regex)
	}
	from := localday.Day{Year: 2026, Month: time.March, Day: 1}.Start()
	panels, err := dashboardPanels(reg, from, from.Add(30*24*time.Hour), resolve)
	require.NoError(t, err)
	quartiles := 0
	for _, p := range panels {
		require.NotEmpty(t, p.Queries, p.Title)
		for _, q := range p.Queries {
			require.Contains(t, p.Raw, q.RefID, p.Title)
			require.NotContains(t, p.Raw[q.RefID].Expr, "_daily_wh", "%s %s: still reads a derived metric", p.Title, q.RefID)
			require.NotContains(t, string(q.JSON), "$", "%s %s: variable left", p.Title, q.RefID)
		}
		if strings.HasPrefix(p.Title, "Household consumption quartiles") {
			quartiles++
		}
	}
	require.Equal(t, 15, quartiles, "the quartile panel is repeated per households-<cluster> perimeter")
}

var (
	benchOnce sync.Once
	benchDash *Dashboard
	benchErr  error
)

// benchDashboard builds the fixture once per test binary: a year (days
// from METERGATE_DASHBOARD_DAYS, default 365) of the district, and the
// year before for the time-shifted panel.
func benchDashboard(b *testing.B) *Dashboard {
	benchOnce.Do(func() {
		days := 365
		if s := os.Getenv("METERGATE_DASHBOARD_DAYS"); s != "" {
			days, benchErr = strconv.Atoi(s)
			if benchErr != nil {
				return
			}
		}
		// A fixed directory: the district's TSDB is reused by later runs.
		dir := filepath.Join(os.TempDir(), "metergate-dashboard-bench-"+strconv.Itoa(days))
		if err := os.RemoveAll(filepath.Join(dir, "server")); err != nil {
			benchErr = err
			return
		}
		benchDash, benchErr = StartDashboard(context.Background(), dir, days, os.Stderr)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDash
}

// BenchmarkDashboardRefresh refreshes every panel of the neighbourhood
// dashboard over a year: gated is the plugin's QueryData through a
// metergate server and its gate, raw the same figures' PromQL in
// Prometheus's engine on the same TSDB. Not part of the default tests:
//
//	go test -run '^$' -bench DashboardRefresh -benchtime 3x ./pkg/bench
func BenchmarkDashboardRefresh(b *testing.B) {
	db := benchDashboard(b)
	ctx := context.Background()
	b.Run("gated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := db.RefreshGated(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := db.RefreshRaw(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDashboardBenchSmall runs the dashboard bench on a few days and
// requires every published number to equal the raw PromQL's. It
// simulates more than a year of the district (the shifted panel), so it
// only runs when METERGATE_DASHBOARD_TEST is set.
func TestDashboardBenchSmall(t *testing.T) {
	if os.Getenv("METERGATE_DASHBOARD_TEST") == "" {
		t.Skip("set METERGATE_DASHBOARD_TEST=1: simulates a year of the district")
	}
	rep, err := RunDashboard(context.Background(), DashboardConfig{WorkDir: t.TempDir(), Days: 14, Reps: 1, Log: os.Stderr})
	require.NoError(t, err)
	var out strings.Builder
	require.NoError(t, rep.WriteTable(&out))
	t.Log("\n" + out.String())
	require.Empty(t, rep.Mismatches)
	require.Positive(t, rep.Checked)
}
