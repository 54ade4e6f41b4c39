package importer_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/enedis"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/importer"
	"github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

const (
	sgeDir      = "/work/shared/data/enedis-sge/"
	sgePRM      = "09111642617347"
	householdDC = "16401220101758"
)

func home(t *testing.T) *st.Instance {
	t.Helper()
	granted := time.Date(2020, 1, 1, 0, 0, 0, 0, localday.Paris)
	reg, err := registry.New(&registry.Registry{
		Meters: []registry.Meter{{PRM: sgePRM, Cluster: "k01", Usage: "residential"}, {PRM: householdDC, Cluster: "k01", Usage: "residential"}},
		Consents: []registry.Consent{{PRM: sgePRM, UseCase: registry.UC3, Granted: granted},
			{PRM: householdDC, UseCase: registry.UC3, Granted: granted}},
		Perimeters: []registry.Perimeter{{Name: "uc3-home", UseCase: registry.UC3, Audience: registry.Consented, Flow: "consumption",
			Select: registry.Selector{PRMs: []string{sgePRM, householdDC}}}},
	})
	require.NoError(t, err)
	return st.Start(t, st.Options{
		Registry: reg,
		Server:   server.Options{Now: func() time.Time { return time.Date(2022, 3, 1, 12, 0, 0, 0, localday.Paris) }},
		// History is years older than the newest sample: the window must
		// cover it (docs/exports.md).
		Edit: func(c *config.Config) { c.Storage.OutOfOrderWindow = model.Duration(10 * 365 * 24 * time.Hour) },
	})
}

func send(t *testing.T, srv *st.Instance, paths ...string) int {
	t.Helper()
	files, err := importer.Load(paths, enedis.Options{})
	require.NoError(t, err)
	s, err := sender.New(sender.Config{URL: srv.URL + "/api/v1/write", Token: st.SenderToken})
	require.NoError(t, err)
	n, err := importer.Send(context.Background(), s, files)
	require.NoError(t, err)
	require.NoError(t, s.Close(context.Background()))
	require.Equal(t, int64(0), s.Stats().SamplesDropped)
	require.Equal(t, int64(n), s.Stats().SamplesSent)
	return n
}

func export(t *testing.T, srv *st.Instance, params url.Values) ([]byte, []map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/exports/uc3.csv?"+params.Encode(), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+st.ConsentedToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	r := csv.NewReader(bytes.NewReader(b))
	r.Comma = ';'
	all, err := r.ReadAll()
	require.NoError(t, err)
	var rows []map[string]string
	for _, rec := range all[1:] {
		m := map[string]string{}
		for i, h := range all[0] {
			m[h] = rec[i]
		}
		rows = append(rows, m)
	}
	return b, rows
}

// rawIndex reads EAS T by the date written in each row of the shared index
// file, with string functions only.
func rawIndex(t *testing.T) map[string]float64 {
	b, err := os.ReadFile(sgeDir + "C5-IDX_Enedis_SGE_HDM_A06NW10D.csv")
	require.NoError(t, err)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ";")
		if len(f) == 17 && f[1] == "Arrêté quotidien" && f[16] != "" {
			v, err := strconv.ParseFloat(f[16], 64)
			require.NoError(t, err)
			out[f[0][:10]] = v
		}
	}
	return out
}

// rawCurveEnergy sums W × 0.5 h over the raw curve rows ending in day d.
func rawCurveEnergy(t *testing.T, d localday.Day) (float64, int) {
	b, err := os.ReadFile(sgeDir + "C5-CDC_Enedis_SGE_HDM_A06NW0ZI.csv")
	require.NoError(t, err)
	e, n := 0.0, 0
	for _, line := range strings.Split(string(b), "\n")[3:] {
		ts, v, _ := strings.Cut(strings.TrimSpace(line), ";")
		at, err := time.Parse(time.RFC3339, ts)
		if err != nil || v == "" || !at.After(d.Start()) || at.After(d.End()) {
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err)
		e += x / 2
		n++
	}
	return e, n
}

func sumCurve(t *testing.T, rows []map[string]string, prm string) (float64, int) {
	e, n := 0.0, 0
	for _, r := range rows {
		if r["pdl"] != prm || r["puissance_w"] == "" {
			continue
		}
		x, err := strconv.ParseFloat(r["puissance_w"], 64)
		require.NoError(t, err)
		e += x / 2
		n++
	}
	return e, n
}

func TestImportSGE(t *testing.T) {
	if _, err := os.Stat(sgeDir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI copies ../shared next to the checkout: %v", err)
		}
		t.Skip("the shared Enedis files are not on this machine")
	}
	srv := home(t)
	require.Positive(t, send(t, srv, sgeDir)) // the folder: its .xml and .txt are not imported

	idx := rawIndex(t)
	daily := url.Values{"from": {"2021-03-26"}, "to": {"2021-11-02"}}
	dailyBytes, rows := export(t, srv, daily)
	byDay := map[string]map[string]string{}
	for _, r := range rows {
		if r["pdl"] == sgePRM {
			byDay[r["jour"]] = r
		}
	}
	tests := []struct {
		day  string
		want string // "" = a gap
	}{
		{"2021-10-31", strconv.FormatFloat(idx["2021-11-01"]-idx["2021-10-31"], 'f', -1, 64)}, // 25 hours
		{"2021-10-30", strconv.FormatFloat(idx["2021-10-31"]-idx["2021-10-30"], 'f', -1, 64)},
		{"2021-06-15", strconv.FormatFloat(idx["2021-06-16"]-idx["2021-06-15"], 'f', -1, 64)},
		{"2021-03-29", strconv.FormatFloat(idx["2021-03-30"]-idx["2021-03-29"], 'f', -1, 64)},
		// The file has no reading opening 2021-03-28 (23 hours): that day
		// and the one before have no daily energy, never zero.
		{"2021-03-28", ""},
		{"2021-03-27", ""},
	}
	for _, tc := range tests {
		r := byDay[tc.day]
		require.NotNil(t, r, tc.day)
		require.Equal(t, sgePRM, r["pdl"], "leading zero kept")
		require.Equal(t, tc.want, r["energie_wh"], tc.day)
		if tc.want == "" {
			require.Equal(t, "absente", r["masque"])
		}
	}
	require.Equal(t, "21321", byDay["2021-10-31"]["energie_wh"], "read by eye in the file: 7473376 − 7452055")

	// Curves across both changes, against the raw rows summed by hand.
	for _, tc := range []struct {
		day    string
		points int
	}{{"2021-03-28", 46}, {"2021-10-31", 50}, {"2021-06-15", 48}} {
		d, err := localday.Parse(tc.day)
		require.NoError(t, err)
		_, curve := export(t, srv, url.Values{"day": {tc.day}, "nature": {"curve"}})
		got, n := sumCurve(t, curve, sgePRM)
		want, wantN := rawCurveEnergy(t, d)
		require.Equal(t, tc.points, wantN, tc.day)
		require.Equal(t, wantN, n, tc.day)
		require.Equal(t, want, got, tc.day)
	}
	_, curve := export(t, srv, url.Values{"day": {"2021-03-28"}, "nature": {"curve"}})
	e, _ := sumCurve(t, curve, sgePRM)
	require.Equal(t, 28052.0, e, "the 23-hour day's energy from its 46 points")

	// Re-importing the same files changes nothing.
	heads := srv.Server.Store().HeadSeries()
	send(t, srv, sgeDir)
	again, _ := export(t, srv, daily)
	require.Equal(t, dailyBytes, again)
	require.Equal(t, heads, srv.Server.Store().HeadSeries())
}

func TestImportDataConnect(t *testing.T) {
	srv := home(t)
	dir := "../../pkg/enedis/testdata/"
	send(t, srv, dir+"dataconnect_daily_consumption.json", dir+"dataconnect_consumption_load_curve.json")
	b, err := os.ReadFile(dir + "dataconnect_daily_consumption.json")
	require.NoError(t, err)
	var dc struct {
		MeterReading struct {
			IntervalReading []struct {
				Value *string
				Date  string
			} `json:"interval_reading"`
		} `json:"meter_reading"`
	}
	require.NoError(t, json.Unmarshal(b, &dc))
	_, rows := export(t, srv, url.Values{"from": {"2021-10-27"}, "to": {"2021-11-03"}})
	got := map[string]map[string]string{}
	for _, r := range rows {
		if r["pdl"] == householdDC {
			got[r["jour"]] = r
		}
	}
	require.Len(t, got, len(dc.MeterReading.IntervalReading))
	for _, r := range dc.MeterReading.IntervalReading {
		if r.Value == nil {
			require.Equal(t, "", got[r.Date]["energie_wh"], r.Date)
			require.Equal(t, "absente", got[r.Date]["masque"], r.Date)
			continue
		}
		require.Equal(t, *r.Value, got[r.Date]["energie_wh"], r.Date)
	}
	_, curve := export(t, srv, url.Values{"day": {"2021-10-31"}, "nature": {"curve"}})
	_, n := sumCurve(t, curve, householdDC)
	require.Equal(t, 50, n)
}

func TestMalformedFileIsRefusedWhole(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../pkg/enedis/testdata/dataconnect_daily_consumption.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a-good.json"), good, 0o600))
	bad := "\uFEFFIdentifiant PRM;Type de donnees;Date de debut;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite;Pas en minutes\n" +
		"09111642617347;Courbe de charge;20/10/2020;02/02/2022;Energie active;Consommation;Comptage Brut;W;\n" +
		"Horodate;Valeur\n" +
		"2021-01-07T01:00:00+01:00;100\n" +
		"2021-01-07T02:00:00+01:00;1O0\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b-bad.csv"), []byte(bad), 0o600))
	files, err := importer.Load([]string{dir}, enedis.Options{})
	require.Nil(t, files, "nothing to send, not even the good file")
	require.ErrorContains(t, err, "b-bad.csv:5: value \"1O0\" is not a number")
	require.ErrorContains(t, err, "nothing was sent")
}
