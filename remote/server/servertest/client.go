package servertest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// Series is one series and its samples, for writing in tests.
type Series struct {
	Labels  labels.Labels
	Samples []prompb.Sample // timestamps in ms
}

// Post sends a raw body to /api/v1/write with the given headers.
func Post(t testing.TB, base, token, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// EncodeV1 builds a remote-write 1.0 body.
func EncodeV1(t testing.TB, series []Series) []byte {
	t.Helper()
	var wr prompb.WriteRequest
	for _, s := range series {
		ts := prompb.TimeSeries{Samples: s.Samples}
		s.Labels.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		wr.Timeseries = append(wr.Timeseries, ts)
	}
	raw, err := wr.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// EncodeV2 builds a remote-write 2.0 body.
func EncodeV2(t testing.TB, series []Series) []byte {
	t.Helper()
	st := writev2.NewSymbolTable()
	var req writev2.Request
	for _, s := range series {
		ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(s.Labels, nil), Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE}}
		for _, p := range s.Samples {
			ts.Samples = append(ts.Samples, writev2.Sample{Value: p.Value, Timestamp: p.Timestamp})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// Content types of the two protocol versions.
const (
	ContentTypeV1 = "application/x-protobuf"
	ContentTypeV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// WriteV1 sends series with remote-write 1.0.
func WriteV1(t testing.TB, base, token string, series ...Series) (int, string) {
	t.Helper()
	return Post(t, base, token, ContentTypeV1, EncodeV1(t, series))
}

// QueryResponse is the Prometheus API's JSON answer.
type QueryResponse struct {
	Status    string   `json:"status"`
	ErrorType string   `json:"errorType"`
	Error     string   `json:"error"`
	Warnings  []string `json:"warnings"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
			Values [][]any           `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// Query runs an instant query and returns the HTTP status and the answer.
func Query(t testing.TB, base, token, q string, ts time.Time) (int, QueryResponse) {
	t.Helper()
	return Get(t, base, token, "/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64)}})
}

// QueryRange runs a range query.
func QueryRange(t testing.TB, base, token, q string, start, end time.Time, step time.Duration) (int, QueryResponse) {
	t.Helper()
	return Get(t, base, token, "/api/v1/query_range", url.Values{"query": {q},
		"start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}})
}

// Get calls an API path with a query string.
func Get(t testing.TB, base, token, path string, params url.Values) (int, QueryResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	return do(t, req, token)
}

// PostForm calls an API URL with url-encoded fields in the body, as
// `curl --data-urlencode` does.
func PostForm(t testing.TB, apiURL, token string, form url.Values) (int, QueryResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, apiURL, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req, token)
}

func do(t testing.TB, req *http.Request, token string) (int, QueryResponse) {
	t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var qr QueryResponse
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && b[0] == '{' {
		require.NoError(t, json.Unmarshal(b, &qr), string(b))
	} else {
		qr.Error = string(b)
	}
	return resp.StatusCode, qr
}
