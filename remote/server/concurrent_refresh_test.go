package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	rwsender "github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// Ten dashboards refreshing at once while the head-end delivers new days:
// every answer about the published days stays exactly what it was before
// the deliveries began, and no request fails. (Issue 8: concurrent
// refreshes while ingestion runs keep every answer correct.)
func TestConcurrentRefreshesDuringIngestion(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates the district")
	}
	until, err := localday.Parse("2026-03-20")
	require.NoError(t, err)
	reg, err := district.Generate(district.Options{Seed: 7, Until: until})
	require.NoError(t, err)
	clock := until.AddDays(3).Start().Add(12 * time.Hour) // every simulated day is past D+2
	srv := st.Start(t, st.Options{Registry: reg, Server: server.Options{Now: func() time.Time { return clock }}})
	ctx := context.Background()

	deliver := func(last localday.Day, days int) {
		s, err := rwsender.New(rwsender.Config{URL: srv.URL + "/api/v1/write", Token: st.SenderToken})
		require.NoError(t, err)
		_, err = district.Simulate(ctx, reg, district.Config{Model: district.ModelOptions{Seed: 7, Until: last}, Days: days,
			Now: func() time.Time { return clock }}, s)
		require.NoError(t, err)
		require.NoError(t, s.Close(ctx))
	}
	published := until.AddDays(-3) // the days the dashboards show are delivered first
	deliver(published, 7)

	// The One Planet dashboard's figures over the published week.
	start, end := published.AddDays(-6).End(), published.End()
	queries := []string{
		`sum(linky_consumption_daily_wh{perimeter="confluence"})`,
		`sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		`quantile(0.5, linky_consumption_daily_wh{perimeter="households-k03"})`,
		`quantile(0.25, linky_consumption_daily_wh{perimeter="households-k07"})`,
		`sum(linky_injection_daily_wh{perimeter="producers"})`,
		`sum(producer_generation_daily_wh{perimeter="producers"}) - sum(linky_injection_daily_wh{perimeter="producers"})`,
	}
	answer := func(q string) (int, string) {
		code, r := st.QueryRange(t, srv.URL, st.PublicToken, q, start, end, 24*time.Hour)
		return code, fmt.Sprint(r.Data.Result, r.Warnings, r.Error)
	}
	want := map[string]string{}
	for _, q := range queries {
		code, a := answer(q)
		require.Equal(t, http.StatusOK, code, a)
		require.False(t, strings.HasPrefix(a, "[]"), "%s: an answer with points, not %s", q, a)
		want[q] = a
	}

	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	wg.Add(1)
	go func() { // the next nights' deliveries, meanwhile
		defer wg.Done()
		deliver(until, 3)
	}()
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				for _, q := range queries {
					if code, a := answer(q); code != http.StatusOK || a != want[q] {
						errs <- fmt.Sprintf("%s: status %d, answer changed:\n got %s\nwant %s", q, code, a, want[q])
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// The deliveries did land: the newest day is there for the operator.
	code, r := st.Query(t, srv.URL, st.OperatorToken, `count(linky_index_wh)`, until.End())
	require.Equal(t, http.StatusOK, code, r.Error)
	require.NotEmpty(t, r.Data.Result)
}
