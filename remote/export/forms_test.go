package export_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// A perimeter that publishes only sums, or only quartiles (registry
// forms), has the other columns empty on every row, and the export never
// asks the gate for them.
func TestFormsOfPerimeters(t *testing.T) {
	d := gatetest.Build(t)
	west := d.West()
	r := d.WithPerimeters(t, d.FormsPerimeters())
	srv := st.Start(t, st.Options{
		Registry: r,
		Server:   server.Options{Store: districtStore{&store.Embedded{DB: d.DB}}, Now: func() time.Time { return d.Now }},
	})
	day := gatetest.Day("2024-03-28")
	a := get(t, srv.URL, st.PublicToken, path, url.Values{"day": {day.String()}}, nil)
	require.Equal(t, http.StatusOK, a.code, string(a.body))
	_, rows := table(t, a.body, ';')

	sum, n := d.Expected(catalogue.IndexConsumption, d.Clusters["k01"], day, -1)
	got := find(rows, "perimetre", "cluster-k01", "groupe", "")
	require.Len(t, got, 1)
	require.Equal(t, wh(sum), got[0]["energie_wh"])
	require.Equal(t, strconv.Itoa(n), got[0]["nb_pdl"])
	for _, c := range []string{"energie_q1_wh", "energie_mediane_wh", "energie_q3_wh", "masque"} {
		require.Empty(t, got[0][c], c)
	}
	require.Len(t, find(rows, "perimetre", "confluence", "groupe", "cluster=k03"), 1, "sums by group are published")

	got = find(rows, "perimetre", "west", "groupe", "")
	require.Len(t, got, 1)
	require.Empty(t, got[0]["energie_wh"], "west publishes no sum")
	require.Empty(t, got[0]["masque"])
	for c, q := range map[string]float64{"energie_q1_wh": 0.25, "energie_mediane_wh": 0.5, "energie_q3_wh": 0.75} {
		v, n := d.Expected(catalogue.IndexConsumption, west, day, q)
		require.Equal(t, wh(v), got[0][c], c)
		require.Equal(t, strconv.Itoa(n), got[0]["nb_pdl"])
	}
}
