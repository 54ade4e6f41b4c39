package export_test

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/export"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// districtStore lends the district's TSDB to a server without letting the
// server close it (the district owns it).
type districtStore struct{ *store.Embedded }

func (districtStore) Close() error { return nil }

// injection is a perimeter whose name a spreadsheet would run as a formula;
// it has the members of cluster k01, so the partition check still passes.
const injection = `=HYPERLINK("http://x.example/?";"clic")`

func districtServer(t *testing.T, d *gatetest.District, now time.Time) *st.Instance {
	t.Helper()
	reg := *d.Registry
	reg.Perimeters = append(slices.Clone(reg.Perimeters), registry.Perimeter{Name: injection, UseCase: registry.UC4,
		Audience: registry.Public, Flow: "consumption", Select: registry.Selector{Clusters: []string{"k01"}}})
	r, err := registry.New(&reg)
	require.NoError(t, err)
	return st.Start(t, st.Options{
		Registry: r,
		Server:   server.Options{Store: districtStore{&store.Embedded{DB: d.DB}}, Now: func() time.Time { return now }},
	})
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func get(t *testing.T, base, token, path string, params url.Values, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// A transport that does not ask for gzip itself, so the test sees what
	// the server sends.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, resp.Header, b}
}

// table parses a CSV answer into its header and rows keyed by column.
func table(t *testing.T, body []byte, comma rune) ([]string, []map[string]string) {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(body))
	r.Comma = comma
	all, err := r.ReadAll()
	require.NoError(t, err, string(body))
	require.NotEmpty(t, all)
	var rows []map[string]string
	for _, rec := range all[1:] {
		m := map[string]string{}
		for i, h := range all[0] {
			m[h] = rec[i]
		}
		rows = append(rows, m)
	}
	return all[0], rows
}

func find(rows []map[string]string, kv ...string) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		ok := true
		for i := 0; i < len(kv); i += 2 {
			ok = ok && r[kv[i]] == kv[i+1]
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

func wh(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

const path = export.Prefix + "uc4.csv"

func TestDailyBatchAggregates(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	normal, short := gatetest.Day("2024-03-28"), gatetest.Day("2024-03-31")
	sum := func(prms []string, day localday.Day) (string, string) {
		v, n := d.Expected(catalogue.IndexConsumption, prms, day, -1)
		return wh(v), strconv.Itoa(n)
	}
	q := func(prms []string, day localday.Day, q float64) string {
		v, _ := d.Expected(catalogue.IndexConsumption, prms, day, q)
		return wh(v)
	}
	tests := []struct {
		name      string
		day       localday.Day
		perimeter string
		group     string
		prms      []string
		horodate  string
	}{
		{"district total", normal, "confluence", "", d.All(), "2024-03-29T00:00:00+01:00"},
		{"district by cluster", normal, "confluence", "cluster=k02", d.Clusters["k02"], "2024-03-29T00:00:00+01:00"},
		{"cluster perimeter", normal, "cluster-k01", "", d.Clusters["k01"], "2024-03-29T00:00:00+01:00"},
		{"23-hour day", short, "confluence", "", d.All(), "2024-04-01T00:00:00+02:00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {tc.day.String()}}, nil)
			require.Equal(t, http.StatusOK, a.code, string(a.body))
			require.Equal(t, "text/csv; charset=utf-8; header=present", a.header.Get("Content-Type"))
			header, rows := table(t, a.body, ';')
			require.Equal(t, []string{"horodate", "jour", "perimetre", "groupe", "energie_wh", "energie_q1_wh",
				"energie_mediane_wh", "energie_q3_wh", "nb_pdl", "masque"}, header)
			got := find(rows, "perimetre", tc.perimeter, "groupe", tc.group)
			require.Len(t, got, 1)
			r := got[0]
			e, n := sum(tc.prms, tc.day)
			require.Equal(t, map[string]string{
				"horodate": tc.horodate, "jour": tc.day.String(), "perimetre": tc.perimeter, "groupe": tc.group,
				"energie_wh": e, "energie_q1_wh": q(tc.prms, tc.day, 0.25), "energie_mediane_wh": q(tc.prms, tc.day, 0.5),
				"energie_q3_wh": q(tc.prms, tc.day, 0.75), "nb_pdl": n, "masque": "",
			}, r)
			for _, r := range rows {
				require.Equal(t, tc.day.String(), r["jour"], "a batch holds its day only")
			}
		})
	}
}

// Suppressed points are rows with empty values and a reason; a day without
// data is a row that says so. Never a zero, never a silent gap.
func TestMaskedRows(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	tests := []struct {
		name      string
		day       localday.Day
		perimeter string
		group     string
		want      map[string]string
	}{
		{"too few contributors: everything hidden, no set size", gatetest.MissingK01, "confluence", "cluster=k01",
			map[string]string{"energie_wh": "", "energie_q1_wh": "", "energie_mediane_wh": "", "energie_q3_wh": "", "nb_pdl": "", "masque": export.MaskHidden}},
		{"dominance hides the sum, not the quartiles", gatetest.DominantDay, "producers", "",
			map[string]string{"energie_wh": "", "masque": export.MaskHidden}},
		{"no data at all", gatetest.Day("2024-04-10"), "confluence", "",
			map[string]string{"energie_wh": "", "energie_q1_wh": "", "energie_mediane_wh": "", "energie_q3_wh": "", "nb_pdl": "", "masque": export.MaskAbsent}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {tc.day.String()}}, nil)
			require.Equal(t, http.StatusOK, a.code, string(a.body))
			_, rows := table(t, a.body, ';')
			got := find(rows, "perimetre", tc.perimeter, "groupe", tc.group)
			require.Len(t, got, 1, string(a.body))
			for k, v := range tc.want {
				require.Equal(t, v, got[0][k], k)
			}
		})
	}
	// The dominated producers' quartiles are published, with their set size.
	a := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {gatetest.DominantDay.String()}}, nil)
	_, rows := table(t, a.body, ';')
	p := find(rows, "perimetre", "producers")[0]
	v, n := d.Expected(catalogue.IndexInjection, d.Producers, gatetest.DominantDay, 0.5)
	require.Equal(t, wh(v), p["energie_mediane_wh"])
	require.Equal(t, strconv.Itoa(n), p["nb_pdl"])
}

// The export holds exactly what the query API (a Grafana panel) shows.
func TestSameNumbersAsTheQueryAPI(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	from, to := gatetest.Windows[1][0], gatetest.Windows[1][1].AddDays(-1)
	a := get(t, srv.URL, st.PublicToken, path, url.Values{"from": {from.String()}, "to": {to.String()}}, nil)
	require.Equal(t, http.StatusOK, a.code, string(a.body))
	_, rows := table(t, a.body, ';')
	code, qr := st.QueryRange(t, srv.URL, st.PublicToken, `sum by (cluster) (linky_consumption_daily_wh{perimeter="confluence"})`,
		from.End(), to.End(), 24*time.Hour)
	require.Equal(t, http.StatusOK, code)
	compared := 0
	for _, s := range qr.Data.Result {
		for _, p := range s.Values {
			ts := time.Unix(int64(p[0].(float64)), 0)
			got := find(rows, "horodate", export.Horodate(ts), "perimetre", "confluence", "groupe", "cluster="+s.Metric["cluster"])
			require.Len(t, got, 1)
			require.Equal(t, p[1].(string), got[0]["energie_wh"])
			compared++
		}
	}
	require.Greater(t, compared, 10)
	// Rows are in (horodate, perimetre, groupe) order, one per step.
	for i := 1; i < len(rows); i++ {
		a, b := rows[i-1], rows[i]
		require.LessOrEqual(t, a["horodate"]+a["perimetre"], b["horodate"]+b["perimetre"], "row %d", i)
	}
}

func TestFormatRules(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	day := url.Values{"day": {"2024-03-28"}}
	t.Run("formula injection is neutralised and quoting is RFC 4180", func(t *testing.T) {
		a := get(t, srv.URL, st.PublicToken, path, day, nil)
		_, rows := table(t, a.body, ';')
		got := find(rows, "perimetre", "'"+injection)
		require.Len(t, got, 1, string(a.body))
		want, _ := d.Expected(catalogue.IndexConsumption, d.Clusters["k01"], gatetest.Day("2024-03-28"), -1)
		require.Equal(t, wh(want), got[0]["energie_wh"])
		require.Contains(t, string(a.body), `"'=HYPERLINK(""http://x.example/?"";""clic"")"`)
	})
	t.Run("comma separator, BOM, CRLF, point decimal", func(t *testing.T) {
		a := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {"2024-03-28"}, "sep": {","}, "bom": {"1"}}, nil)
		require.True(t, bytes.HasPrefix(a.body, []byte("\uFEFFhorodate,jour,perimetre,groupe,energie_wh,")), string(a.body[:40]))
		require.Contains(t, string(a.body), "\r\n")
		_, rows := table(t, bytes.TrimPrefix(a.body, []byte("\uFEFF")), ',')
		q := find(rows, "perimetre", "confluence", "groupe", "")[0]["energie_mediane_wh"]
		require.Regexp(t, `^[0-9]+(\.[0-9]+)?$`, q)
	})
	t.Run("no BOM by default", func(t *testing.T) {
		a := get(t, srv.URL, st.PublicToken, path, day, nil)
		require.True(t, bytes.HasPrefix(a.body, []byte("horodate;jour;")))
	})
	t.Run("bad parameters", func(t *testing.T) {
		for _, p := range []url.Values{{"day": {"28/03/2024"}}, {"from": {"2024-03-28"}}, {"day": {"2024-03-28"}, "sep": {"\t"}},
			{"from": {"2024-03-29"}, "to": {"2024-03-28"}}} {
			a := get(t, srv.URL, st.PublicToken, path, p, nil)
			require.Equal(t, http.StatusBadRequest, a.code, p.Encode())
		}
	})
}

func TestBatchIsStable(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	day := url.Values{"day": {"2024-10-27"}}
	first := get(t, srv.URL, st.PublicToken, path, day, nil)
	require.Equal(t, http.StatusOK, first.code)
	etag := first.header.Get("ETag")
	require.NotEmpty(t, etag)
	for range 3 {
		again := get(t, srv.URL, st.PublicToken, path, day, nil)
		require.Equal(t, first.body, again.body, "same bytes every time")
		require.Equal(t, etag, again.header.Get("ETag"))
	}
	notModified := get(t, srv.URL, st.PublicToken, path, day, http.Header{"If-None-Match": {etag}})
	require.Equal(t, http.StatusNotModified, notModified.code)
	require.Empty(t, notModified.body)
	other := get(t, srv.URL, st.PublicToken, path, day, http.Header{"If-None-Match": {`"something-else"`}})
	require.Equal(t, http.StatusOK, other.code)

	zipped := get(t, srv.URL, st.PublicToken, path, day, http.Header{"Accept-Encoding": {"gzip"}})
	require.Equal(t, "gzip", zipped.header.Get("Content-Encoding"))
	require.NotEqual(t, etag, zipped.header.Get("ETag"))
	zr, err := gzip.NewReader(bytes.NewReader(zipped.body))
	require.NoError(t, err)
	plain, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, first.body, plain)
	zipped2 := get(t, srv.URL, st.PublicToken, path, day, http.Header{"Accept-Encoding": {"gzip"}})
	require.Equal(t, zipped.body, zipped2.body)
	require.Equal(t, http.StatusNotModified, get(t, srv.URL, st.PublicToken, path, day,
		http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {zipped.header.Get("ETag")}}).code)

	// A streamed range is gzipped too.
	rz := get(t, srv.URL, st.PublicToken, path, url.Values{"from": {"2024-10-24"}, "to": {"2024-10-28"}}, http.Header{"Accept-Encoding": {"gzip"}})
	require.Equal(t, "gzip", rz.header.Get("Content-Encoding"))
	zr, err = gzip.NewReader(bytes.NewReader(rz.body))
	require.NoError(t, err)
	plain, err = io.ReadAll(zr)
	require.NoError(t, err)
	_, rows := table(t, plain, ';')
	require.Len(t, find(rows, "perimetre", "confluence", "groupe", ""), 5)
}

func TestDPlus2(t *testing.T) {
	d := gatetest.Build(t)
	now := time.Date(2024, 3, 30, 12, 0, 0, 0, localday.Paris) // 03-28 is published, 03-29 is not
	srv := districtServer(t, d, now)
	ok := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {"2024-03-28"}}, nil)
	require.Equal(t, http.StatusOK, ok.code)
	early := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {"2024-03-29"}}, nil)
	require.Equal(t, http.StatusNotFound, early.code)
	require.Equal(t, strconv.Itoa(12*3600+1), early.header.Get("Retry-After"))
	require.NotContains(t, string(early.body), "energie")
	// A range is cut at D+2.
	rng := get(t, srv.URL, st.PublicToken, path, url.Values{"from": {"2024-03-27"}, "to": {"2024-04-02"}}, nil)
	require.Equal(t, http.StatusOK, rng.code)
	_, rows := table(t, rng.body, ';')
	for _, r := range rows {
		require.Contains(t, []string{"2024-03-27", "2024-03-28"}, r["jour"])
	}
}

func TestRefusals(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	day := url.Values{"day": {"2024-03-28"}}
	tests := []struct {
		name, token, path string
		params            url.Values
	}{
		{"restricted use case, public caller", st.PublicToken, export.Prefix + "uc2.csv", day},
		{"unknown use case", st.PublicToken, export.Prefix + "uc9.csv", day},
		{"curves without consent", st.RestrictedToken, export.Prefix + "uc2.csv", url.Values{"day": {"2024-03-28"}, "nature": {"curve"}}},
		{"consented caller, other use case", st.ConsentedToken, export.Prefix + "uc2.csv", day},
		{"no token", "", path, day},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, srv.URL, tc.token, tc.path, tc.params, nil)
			require.Equal(t, http.StatusForbidden, a.code)
			require.Equal(t, "query refused by the privacy policy\n", string(a.body))
		})
	}
}

func TestConsented(t *testing.T) {
	d := gatetest.Build(t)
	srv := districtServer(t, d, d.Now)
	uc3 := export.Prefix + "uc3.csv"
	t.Run("individual daily values of the consenting RMPs only", func(t *testing.T) {
		a := get(t, srv.URL, st.ConsentedToken, uc3, url.Values{"from": {"2024-03-28"}, "to": {"2024-04-01"}}, nil)
		require.Equal(t, http.StatusOK, a.code, string(a.body))
		header, rows := table(t, a.body, ';')
		require.Equal(t, []string{"horodate", "jour", "perimetre", "pdl", "energie_wh", "masque"}, header)
		var prms []string
		for _, r := range rows {
			if !slices.Contains(prms, r["pdl"]) {
				prms = append(prms, r["pdl"])
			}
			day := gatetest.Day(r["jour"])
			v, ok := d.Daily(catalogue.IndexConsumption, r["pdl"], day)
			if ok {
				require.Equal(t, wh(v), r["energie_wh"], "%s %s", r["pdl"], day)
				require.Empty(t, r["masque"])
			} else {
				require.Equal(t, "", r["energie_wh"])
				require.Equal(t, export.MaskAbsent, r["masque"])
			}
		}
		slices.Sort(prms)
		// The late grant (2024-03-31) does not cover the whole range, and
		// the revoked consent covers nothing any more.
		require.Equal(t, d.Consenting, prms)
		require.Len(t, rows, 5*len(d.Consenting))
	})
	t.Run("30-minute curves across the 23-hour day", func(t *testing.T) {
		a := get(t, srv.URL, st.ConsentedToken, uc3, url.Values{"day": {"2024-03-31"}, "nature": {"curve"}}, nil)
		require.Equal(t, http.StatusOK, a.code, string(a.body))
		header, rows := table(t, a.body, ';')
		require.Equal(t, []string{"horodate", "perimetre", "pdl", "puissance_w", "masque"}, header)
		for _, prm := range append(slices.Clone(d.Consenting), d.LateGrant) {
			got := find(rows, "pdl", prm)
			require.Len(t, got, 46, prm)
			n, err := strconv.Atoi(prm)
			require.NoError(t, err)
			n -= 21000000000000
			for _, r := range got {
				ts, err := time.Parse(time.RFC3339, r["horodate"])
				require.NoError(t, err)
				// gatetest's curve: 100 + (n*13 + t/1800) mod 900.
				require.Equal(t, fmt.Sprint(100+(n*13+int(ts.Unix()/1800))%900), r["puissance_w"])
			}
		}
		require.Equal(t, "2024-03-31T00:30:00+01:00", rows[0]["horodate"])
		require.Equal(t, "2024-04-01T00:00:00+02:00", rows[len(rows)-1]["horodate"])
		require.True(t, strings.HasPrefix(rows[0]["pdl"], "2100"))
	})
}
