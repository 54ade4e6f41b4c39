package main

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/registry"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// A server killed with SIGKILL while it ingests keeps, after a restart,
// every sample it acknowledged.
func TestSIGKILLKeepsAcknowledgedSamples(t *testing.T) {
	dir := t.TempDir()
	writeServerDir(t, dir, &registry.Registry{})
	p := startProcess(t, dir)

	const senders, seriesPerBatch = 4, 200
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	acked := make([]int, senders) // batches 0..acked-1 of each sender got 204
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				series := make([]st.Series, seriesPerBatch)
				for s := range series {
					series[s] = st.Series{
						Labels:  labels.FromStrings("__name__", "linky_index_wh", "rmp", fmt.Sprintf("9%02d%011d", g, s)),
						Samples: []prompb.Sample{{Timestamp: base.Add(time.Duration(i) * time.Second).UnixMilli(), Value: float64(i)}},
					}
				}
				code, err := post(p.URL, st.EncodeV1(t, series))
				if err != nil || code != http.StatusNoContent {
					return // the server is gone: this batch was not acknowledged
				}
				acked[g] = i + 1
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	p.kill()
	close(stop)
	wg.Wait()
	total := 0
	for _, n := range acked {
		total += n
	}
	require.Greater(t, total, 10, "the test must kill the server while it ingests")
	t.Logf("killed after %d acknowledged batches of %d samples", total, seriesPerBatch)

	p = startProcess(t, dir)
	end := base.Add(time.Hour)
	code, r := st.Query(t, p.URL, st.OperatorToken, "linky_index_wh[2h]", end)
	require.Equal(t, http.StatusOK, code, r.Error)
	stored := map[string]map[int64]string{}
	for _, s := range r.Data.Result {
		m := map[int64]string{}
		for _, v := range s.Values {
			m[int64(v[0].(float64)*1000)] = v[1].(string)
		}
		stored[s.Metric["rmp"]] = m
	}
	for g, n := range acked {
		for s := range seriesPerBatch {
			rmp := fmt.Sprintf("9%02d%011d", g, s)
			for i := range n {
				ts := base.Add(time.Duration(i) * time.Second).UnixMilli()
				require.Equal(t, strconv.Itoa(i), stored[rmp][ts], "series %s lost acknowledged sample %d", rmp, i)
			}
		}
	}
	p.terminate(t)
}

func post(url string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytesReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+st.SenderToken)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", st.ContentTypeV1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
