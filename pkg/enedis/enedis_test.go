package enedis_test

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/enedis"
	"github.com/metergate/metergate/pkg/localday"
)

const (
	shared   = "/work/shared/data/enedis-sge/"
	curveCSV = shared + "C5-CDC_Enedis_SGE_HDM_A06NW0ZI.csv"
	indexCSV = shared + "C5-IDX_Enedis_SGE_HDM_A06NW10D.csv"
	prm      = "09111642617347"
)

func sharedFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI copies ../shared next to the checkout: %v", err)
		}
		t.Skipf("%s is not on this machine", path)
	}
	require.NoError(t, err)
	return b
}

func day(t *testing.T, s string) localday.Day {
	d, err := localday.Parse(s)
	require.NoError(t, err)
	return d
}

// rawCurve reads the curve file the simplest way (no code under test):
// non-empty values by instant.
func rawCurve(t *testing.T, b []byte) map[time.Time]float64 {
	out := map[time.Time]float64{}
	for _, line := range strings.Split(string(b), "\n")[3:] {
		ts, v, _ := strings.Cut(strings.TrimSpace(line), ";")
		if v == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, ts)
		require.NoError(t, err)
		x, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err)
		out[at.UTC()] = x
	}
	return out
}

func TestSGELoadCurve(t *testing.T) {
	b := sharedFile(t, curveCSV)
	f, err := enedis.Parse("cdc.csv", b, enedis.Options{})
	require.NoError(t, err)
	require.Len(t, f.Series, 1)
	s := f.Series[0]
	require.Equal(t, prm, s.PRM, "the PRM keeps its leading zero")
	require.Equal(t, catalogue.CurveConsumption, s.Metric)
	raw := rawCurve(t, b)
	require.Len(t, s.Samples, len(raw), "one sample per non-empty row: empty values are gaps")
	for _, x := range s.Samples {
		require.Equal(t, raw[x.T.UTC()], x.V, x.T)
	}
	perDay := func(d localday.Day) int {
		n := 0
		for _, x := range s.Samples {
			if x.T.After(d.Start()) && !x.T.After(d.End()) {
				n++
			}
		}
		return n
	}
	require.Equal(t, 46, perDay(day(t, "2021-03-28")), "23-hour day, 30-minute steps")
	require.Equal(t, 50, perDay(day(t, "2021-10-31")), "25-hour day")
	require.Equal(t, 24, perDay(day(t, "2021-01-09")), "60-minute steps before the change")
	require.Equal(t, 48, perDay(day(t, "2021-02-14")), "30-minute steps after it")
}

// rawIndex reads the index file's EAS T column by the date written in
// each row (no code under test).
func rawIndex(t *testing.T, b []byte) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n")[3:] {
		fields := strings.Split(strings.TrimSpace(line), ";")
		if len(fields) != 17 || fields[16] == "" {
			if strings.HasPrefix(line, "Periode") {
				break
			}
			continue
		}
		x, err := strconv.ParseFloat(fields[16], 64)
		require.NoError(t, err)
		out[fields[0][:10]] = x
	}
	return out
}

func TestSGEIndex(t *testing.T) {
	b := sharedFile(t, indexCSV)
	f, err := enedis.Parse("idx.csv", b, enedis.Options{})
	require.NoError(t, err)
	require.Len(t, f.Series, 1)
	s := f.Series[0]
	require.Equal(t, catalogue.IndexConsumption, s.Metric)
	require.Equal(t, prm, s.PRM)
	raw := rawIndex(t, b)
	require.Len(t, s.Samples, len(raw), "one reading per dated day; the autumn duplicate is one")
	for _, x := range s.Samples {
		d := localday.Of(x.T)
		require.Equal(t, d.Start(), x.T, "stored at the local midnight opening the day")
		require.Equal(t, raw[d.String()], x.V, d)
	}
	_, has := raw["2021-03-28"]
	require.False(t, has, "the file has no reading opening the 23-hour day")
	require.NotEmpty(t, f.Notes, "the max-power and calendar sections are reported, not imported")
}

// The reading dated D is the index at the local midnight opening D: the
// difference to the next day's equals the load curve's energy over D, in
// winter and in summer (the winter rows say 23:00+01:00). Computed from the
// two raw files, by hand.
func TestSGEIndexMatchesCurve(t *testing.T) {
	idx := rawIndex(t, sharedFile(t, indexCSV))
	curve := rawCurve(t, sharedFile(t, curveCSV))
	for _, ds := range []string{"2021-12-15", "2022-01-20", "2021-06-15", "2021-10-31", "2021-11-01"} {
		d := day(t, ds)
		e, n := 0.0, 0
		for at, w := range curve {
			if at.After(d.Start()) && !at.After(d.End()) {
				e += w / 2 // 30-minute steps: W × 0.5 h
				n++
			}
		}
		require.Equal(t, int(d.Length()/(30*time.Minute)), n, ds)
		// Average powers are whole watts: half a watt-hour per step of
		// rounding, which the meter's register does not have.
		require.InDelta(t, idx[d.AddDays(1).String()]-idx[ds], e, 1.5, ds)
	}
}

func TestMalformedFiles(t *testing.T) {
	good := "\uFEFFIdentifiant PRM;Type de donnees;Date de debut;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite;Pas en minutes\n" +
		"09111642617347;Courbe de charge;20/10/2020;02/02/2022;Energie active;Consommation;Comptage Brut;W;\n" +
		"Horodate;Valeur\n" +
		"2021-01-07T01:00:00+01:00;100\n" +
		"2021-01-07T02:00:00+01:00;\n" +
		"2021-01-07T03:00:00+01:00;300\n"
	idx := "Identifiant PRM;Type de donnees;Date de debut;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite\n" +
		"09111642617347;Index;20/10/2020;02/02/2022;Energie active;Consommation;Comptage Brut;\n" +
		"Horodate;Type de releve;EAS F1;EAS D1;EAS T\n" +
		"2021-01-08T23:00:00+01:00;Arrêté quotidien;15747;15747;15747\n"
	f, err := enedis.Parse("good.csv", []byte(good), enedis.Options{})
	require.NoError(t, err)
	require.Len(t, f.Series[0].Samples, 2, "the empty value is a gap")
	_, err = enedis.Parse("idx.csv", []byte(idx), enedis.Options{})
	require.NoError(t, err)

	tests := []struct {
		name, content string
		line          int
		reason        string
	}{
		{"no metadata header", "Horodate;Valeur\n2021-01-07T01:00:00+01:00;1\n", 1, "expected the metadata header"},
		{"bad horodate", strings.Replace(good, "2021-01-07T03:00:00+01:00", "07/01/2021 03:00", 1), 6, "not ISO-8601"},
		{"not a number", strings.Replace(good, ";300", ";3OO", 1), 6, "not a number"},
		{"negative", strings.Replace(good, ";300", ";-300", 1), 6, "negative"},
		{"time goes back", strings.Replace(good, "2021-01-07T03:00:00+01:00", "2021-01-07T00:00:00+01:00", 1), 6, "not after the previous"},
		{"odd step", strings.Replace(good, "2021-01-07T03:00:00+01:00", "2021-01-07T03:07:00+01:00", 1), 6, "multiple of 5 minutes"},
		{"extra field", strings.Replace(good, ";300", ";300;1", 1), 6, "3 fields"},
		{"unit", strings.Replace(good, "Brut;W;", "Brut;VA;", 1), 2, "unit"},
		{"PRM", strings.Replace(good, "09111642617347;", "9111642617347;", 1), 2, "14 digits"},
		{"flow", strings.Replace(good, "Consommation", "Autre", 1), 2, "grandeur metier"},
		{"no column header", strings.Replace(good, "Horodate;Valeur\n", "", 1), 3, "column header"},
		{"index not at midnight", strings.Replace(idx, "T23:00:00+01:00", "T12:00:00+01:00", 1), 4, "not at a midnight"},
		{"index day twice", idx + "2021-01-08T00:00:00+01:00;Arrêté quotidien;1;1;1\n", 5, "already read"},
		{"index without total", strings.Replace(idx, ";EAS T", ";EAS X", 1), 3, "EAS T"},
		{"unterminated quote", good + "\"2021-01-07T04:00:00+01:00;1\n", 7, "quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := enedis.Parse("bad.csv", []byte(tc.content), enedis.Options{})
			var pe *enedis.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tc.line, pe.Line, err.Error())
			require.Contains(t, err.Error(), tc.reason)
			require.True(t, strings.HasPrefix(err.Error(), "bad.csv:"), err.Error())
		})
	}
}

type dcJSON struct {
	MeterReading struct {
		IntervalReading []struct {
			Value *string `json:"value"`
			Date  string  `json:"date"`
		} `json:"interval_reading"`
	} `json:"meter_reading"`
}

func readDC(t *testing.T, path string) dcJSON {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var dc dcJSON
	require.NoError(t, json.Unmarshal(b, &dc))
	return dc
}

func TestDataConnectDaily(t *testing.T) {
	const path = "testdata/dataconnect_daily_consumption.json"
	f, err := enedis.ReadFile(path, enedis.Options{})
	require.NoError(t, err)
	require.Equal(t, "data-connect", f.Format)
	require.Len(t, f.Series, 1)
	s := f.Series[0]
	require.Equal(t, "16401220101758", s.PRM)
	require.Equal(t, catalogue.IndexConsumption, s.Metric)
	at := map[time.Time]float64{}
	for _, x := range s.Samples {
		at[x.T] = x.V
	}
	// The gate's rule: energy of D = index at D's end − index at D's start,
	// none when either is missing or the index went down.
	for _, r := range readDC(t, path).MeterReading.IntervalReading {
		d := day(t, r.Date)
		a, okA := at[d.Start()]
		b, okB := at[d.End()]
		require.True(t, okA && okB, r.Date)
		if r.Value == nil {
			require.Less(t, b, a, "a day without value stays a gap: %s", r.Date)
			continue
		}
		want, err := strconv.ParseFloat(*r.Value, 64)
		require.NoError(t, err)
		require.Equal(t, want, b-a, r.Date)
	}
}

func TestDataConnectCurveAcrossTheAutumnChange(t *testing.T) {
	const path = "testdata/dataconnect_consumption_load_curve.json"
	f, err := enedis.ReadFile(path, enedis.Options{Flow: catalogue.Production})
	require.NoError(t, err)
	s := f.Series[0]
	require.Equal(t, catalogue.CurveInjection, s.Metric, "the flow comes from the options")
	raw := readDC(t, path).MeterReading.IntervalReading
	require.Len(t, s.Samples, len(raw))
	require.Len(t, s.Samples, 50, "25-hour day")
	for i, x := range s.Samples {
		require.Equal(t, raw[i].Date, x.T.In(localday.Paris).Format(time.DateTime))
		if i > 0 {
			require.Equal(t, 30*time.Minute, x.T.Sub(s.Samples[i-1].T), "the repeated hour is told apart by order")
		}
	}
	require.Equal(t, day(t, "2021-10-31").Start().Add(30*time.Minute), s.Samples[0].T)
	require.Equal(t, day(t, "2021-10-31").End(), s.Samples[49].T)
}
