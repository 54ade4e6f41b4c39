package server_test

import (
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	st "github.com/metergate/metergate/remote/server/servertest"
)

// Ten requests at once, each a different day of the same 200 series, all
// out of order: every acknowledged sample is stored, and the TSDB counts no
// sample dropped at commit.
func TestConcurrentWritersOfOneSeries(t *testing.T) {
	srv := st.Start(t, st.Options{})
	base := time.Now().Add(-9 * time.Hour).Truncate(time.Minute)
	const meters, days, points = 200, 10, 48
	var wg sync.WaitGroup
	for d := range days {
		wg.Add(1)
		go func() {
			defer wg.Done()
			series := make([]st.Series, meters)
			for m := range series {
				series[m].Labels = index(fmt.Sprintf("4%013d", m))
				for p := range points {
					series[m].Samples = append(series[m].Samples, prompb.Sample{Timestamp: base.Add(time.Duration(d*points+p) * time.Minute).UnixMilli(), Value: 1})
				}
			}
			code, body := st.Post(t, srv.URL, st.SenderToken, st.ContentTypeV1, st.EncodeV1(t, series))
			require.Equal(t, http.StatusNoContent, code, body)
		}()
	}
	wg.Wait()
	v, _ := instantValue(t, srv.URL, fmt.Sprintf("sum(count_over_time(linky_index_wh[%dm]))", days*points+10), base.Add(time.Duration(days*points)*time.Minute))
	m := metrics(t, srv.URL)
	for _, l := range regexp.MustCompile(`(?m)^prometheus_tsdb_(out_of_bound|out_of_order|too_old)_samples_total.*$`).FindAllString(m, -1) {
		require.Regexp(t, ` 0$`, l)
	}
	require.Equal(t, fmt.Sprint(meters*days*points), v)
}
