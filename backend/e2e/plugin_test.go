package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/remote/server/servertest"
)

const (
	hidden  = "hidden to protect privacy: fewer than the required meters"
	refused = "query refused by the privacy policy"
)

// TestPluginAgainstMetergate runs the built plugin as Grafana does against
// a real metergate serve, for every use case and audience, and checks the
// figures against the samples written.
func TestPluginAgainstMetergate(t *testing.T) {
	d := newDistrict()
	in := d.start(t)
	pc := launch(t)
	ds := func(token string) *backend.DataSourceInstanceSettings { return settings(in.URL, token) }
	var (
		public     = ds(servertest.PublicToken)
		restricted = ds(servertest.RestrictedToken)
		consented  = ds(servertest.ConsentedToken) // uc3, uc5
		renovation = ds(renovationToken)           // consented uc2
		operator   = ds(servertest.OperatorToken)
	)
	days := backend.TimeRange{From: firstDay.Start().Add(time.Minute), To: lastDay.End()}
	curves := backend.TimeRange{From: curveDays[0].Start(), To: curveDays[len(curveDays)-1].End()}
	q := func(tr backend.TimeRange, queryType string, model map[string]any) backend.DataQuery {
		b, err := json.Marshal(model)
		require.NoError(t, err)
		return backend.DataQuery{RefID: "A", QueryType: queryType, JSON: b, TimeRange: tr, Interval: time.Minute, MaxDataPoints: 1000}
	}
	run := func(s *backend.DataSourceInstanceSettings, dq backend.DataQuery) backend.DataResponse {
		return pc.queryData(t, s, dq).Responses["A"]
	}
	every := func(fn func(localday.Day)) {
		for dd := firstDay; !dd.After(lastDay); dd = dd.AddDays(1) {
			fn(dd)
		}
	}
	all := d.where(func(meter) bool { return true })
	k01 := d.where(func(m meter) bool { return m.cluster == "k01" })
	k02 := d.where(func(m meter) bool { return m.cluster == "k02" })
	b1 := d.where(func(m meter) bool { return m.bld == "b1" })
	b2 := d.where(func(m meter) bool { return m.bld == "b2" })
	producers := d.where(func(m meter) bool { return m.producer != "" })
	isHiddenDay := func(dd localday.Day) bool { return dd == missingDay || dd == missingDay.AddDays(1) }

	t.Run("health", func(t *testing.T) {
		res := pc.checkHealth(t, restricted)
		require.Equal(t, backend.HealthStatusOk, res.Status, res.Message)
		require.Contains(t, res.Message, `as "partner": audience restricted, use cases uc1, uc2`)
		require.Contains(t, res.Message, "building-b1")

		res = pc.checkHealth(t, consented)
		require.Equal(t, backend.HealthStatusOk, res.Status, res.Message)
		require.Contains(t, res.Message, "audience consented, use cases uc3, uc5")
		require.Contains(t, res.Message, "uc3-b2")
		require.NotContains(t, res.Message, "building-b1", "restricted perimeters are not listed to a consented token")

		res = pc.checkHealth(t, operator)
		require.Equal(t, backend.HealthStatusOk, res.Status, res.Message)
		require.Contains(t, res.Message, "audience operator")

		res = pc.checkHealth(t, ds(servertest.SenderToken))
		require.Equal(t, backend.HealthStatusError, res.Status)
		require.Contains(t, res.Message, "can only write")

		res = pc.checkHealth(t, ds("not-a-token-of-this-server"))
		require.Equal(t, backend.HealthStatusError, res.Status)
		require.Contains(t, res.Message, "refused the token (401)")

		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		closed := "http://" + l.Addr().String()
		require.NoError(t, l.Close())
		res = pc.checkHealth(t, settings(closed, servertest.PublicToken))
		require.Equal(t, backend.HealthStatusError, res.Status)
		require.Contains(t, res.Message, "Cannot reach metergate at "+closed)

		res = pc.checkHealth(t, settings("", servertest.PublicToken))
		require.Equal(t, backend.HealthStatusError, res.Status)
		require.Contains(t, res.Message, "URL is not set")
	})

	t.Run("uc1 monthly consumption against the target", func(t *testing.T) {
		r := run(restricted, q(days, "uc1", map[string]any{"perimeter": "building-b1", "metric": "monthly_vs_target"}))
		require.NoError(t, r.Error)
		require.Len(t, r.Frames, 1)
		f := r.Frames[0]
		require.Equal(t, 3, len(f.Fields))
		require.Equal(t, 2, f.Rows(), "March and the first days of April")
		for row, month := range []struct {
			first localday.Day
			n     int
		}{{day("2024-03-01"), 31}, {day("2024-04-01"), 5}} {
			want := 0.0
			for i := range month.n {
				v, n := d.sum("linky_index_wh", b1, month.first.AddDays(i))
				require.Equal(t, len(b1), n)
				want += v
			}
			ts, _ := f.Fields[0].ConcreteAt(row)
			require.True(t, ts.(time.Time).Equal(month.first.Start()))
			got, ok := f.Fields[1].ConcreteAt(row)
			require.True(t, ok, "month %s is complete", month.first)
			require.InDelta(t, want, got.(float64), 1e-6)
			target, _ := f.Fields[2].ConcreteAt(row)
			require.InDelta(t, b1Target*1000*b1Surface*float64(month.n)/366, target.(float64), 1e-6)
			require.Equal(t, "watth", f.Fields[1].Config.Unit)
		}
		require.Contains(t, noticeText(f), "2024-04 (5 of 30 days)")

		r = run(public, q(days, "uc1", map[string]any{"perimeter": "building-b1", "metric": "monthly_vs_target"}))
		requireRefused(t, r)
	})

	t.Run("uc2 renovated buildings", func(t *testing.T) {
		sums := run(restricted, q(days, "uc2", map[string]any{"perimeter": "building-b2", "metric": "daily_sum"}))
		require.NoError(t, sums.Error)
		got := byName(t, sums.Frames)
		every(func(dd localday.Day) {
			want, _ := d.sum("linky_index_wh", b2, dd)
			require.InDelta(t, want, *got["Daily consumption (sum) — building-b2"][dd.Start()], 1e-6, dd.String())
		})
		median := run(restricted, q(days, "uc2", map[string]any{"perimeter": "building-b2", "metric": "daily_median"}))
		require.NoError(t, median.Error)
		got = byName(t, median.Frames)
		every(func(dd localday.Day) {
			require.Equal(t, d.quartile("linky_index_wh", b2, dd, 0.5), *got["Daily consumption, median household — building-b2"][dd.Start()], dd.String())
		})

		lc := run(renovation, q(curves, "uc2", map[string]any{"perimeter": "uc2-b2", "metric": "load_curve"}))
		require.NoError(t, lc.Error)
		got = byName(t, lc.Frames)
		require.Len(t, got, len(d.uc2), "one curve per consenting household")
		for _, p := range d.uc2 {
			series := got["household "+p]
			require.Len(t, series, len(d.curves["linky_load_curve_watts"][p]))
			for ts, v := range d.curves["linky_load_curve_watts"][p] {
				require.Equal(t, v, *series[ts])
			}
		}
		require.Equal(t, "watt", lc.Frames[0].Fields[1].Config.Unit)

		requireRefused(t, run(restricted, q(curves, "uc2", map[string]any{"perimeter": "building-b2", "metric": "load_curve"})))
	})

	t.Run("uc3 consenting households", func(t *testing.T) {
		r := run(consented, q(days, "uc3", map[string]any{"perimeter": "uc3-b2", "metric": "daily"}))
		require.NoError(t, r.Error)
		got := byName(t, r.Frames)
		require.Len(t, got, len(d.uc3), "the revoked consent shares nothing")
		for _, p := range d.uc3 {
			every(func(dd localday.Day) {
				want, _ := d.daily("linky_index_wh", p, dd)
				require.Equal(t, want, *got["household "+p][dd.Start()])
			})
		}
		requireRefused(t, run(restricted, q(days, "uc3", map[string]any{"perimeter": "uc3-b2", "metric": "daily"})))
		requireRefused(t, run(renovation, q(days, "uc3", map[string]any{"perimeter": "uc3-b2", "metric": "daily"})))
	})

	t.Run("uc4 neighbourhood", func(t *testing.T) {
		r := run(public, q(days, "uc4", map[string]any{"metric": "clusters"}))
		require.NoError(t, r.Error)
		got := byName(t, r.Frames)
		require.Len(t, got, 2)
		every(func(dd localday.Day) {
			w1, n1 := d.sum("linky_index_wh", k01, dd)
			w2, _ := d.sum("linky_index_wh", k02, dd)
			if isHiddenDay(dd) {
				require.Equal(t, 90, n1)
				require.Nil(t, got["cluster k01"][dd.Start()], "a hidden point is a gap, not a zero (%s)", dd)
			} else {
				require.InDelta(t, w1, *got["cluster k01"][dd.Start()], 1e-6)
			}
			require.InDelta(t, w2, *got["cluster k02"][dd.Start()], 1e-6)
		})
		require.Contains(t, noticeText(r.Frames[0]), "2 of 72 points "+hidden)

		total := run(public, q(days, "uc4", map[string]any{"metric": "consumption"}))
		perInh := run(public, q(days, "uc4", map[string]any{"metric": "per_inhabitant"}))
		injected := run(public, q(days, "uc4", map[string]any{"metric": "injected"}))
		self := run(public, q(days, "uc4", map[string]any{"metric": "self_consumed"}))
		clusterInh := run(public, q(days, "uc4", map[string]any{"metric": "clusters_per_inhabitant"}))
		for _, r := range []backend.DataResponse{total, perInh, injected, self, clusterInh} {
			require.NoError(t, r.Error)
		}
		gt, gp, gi, gs, gc := byName(t, total.Frames), byName(t, perInh.Frames), byName(t, injected.Frames), byName(t, self.Frames), byName(t, clusterInh.Frames)
		require.Contains(t, noticeText(total.Frames[0]), hidden)
		every(func(dd localday.Day) {
			all, _ := d.sum("linky_index_wh", all, dd)
			if isHiddenDay(dd) {
				require.Nil(t, gt["Daily consumption — confluence"][dd.Start()])
				require.Nil(t, gp["Daily consumption per inhabitant — confluence"][dd.Start()])
			} else {
				require.InDelta(t, all, *gt["Daily consumption — confluence"][dd.Start()], 1e-6)
				require.InDelta(t, all/(inhK01+inhK02), *gp["Daily consumption per inhabitant — confluence"][dd.Start()], 1e-6)
			}
			inj, n := d.sum("linky_injection_index_wh", producers, dd)
			require.Equal(t, nProducers, n)
			gen, _ := d.sum("producer_generation_index_wh", producers, dd)
			require.InDelta(t, inj, *gi["Daily production injected into the grid — producers"][dd.Start()], 1e-6)
			require.InDelta(t, gen-inj, *gs["Daily production self-consumed — producers"][dd.Start()], 1e-6)
			w2, _ := d.sum("linky_index_wh", k02, dd)
			require.InDelta(t, w2/inhK02, *gc["cluster k02 per inhabitant"][dd.Start()], 1e-6)
		})
		requireRefused(t, run(consented, q(days, "uc4", map[string]any{"metric": "clusters"})))
	})

	t.Run("uc5 charge curves", func(t *testing.T) {
		r := run(consented, q(curves, "uc5", map[string]any{"metric": "charge_curves"}))
		require.NoError(t, r.Error)
		got := byName(t, r.Frames)
		require.Len(t, got, nStations)
		for _, p := range d.stations {
			series := got["charging station meter "+p]
			require.Len(t, series, len(d.curves["ev_station_charge_power_watts"][p]))
			for ts, v := range d.curves["ev_station_charge_power_watts"][p] {
				require.Equal(t, v, *series[ts])
			}
		}
		requireRefused(t, run(public, q(curves, "uc5", map[string]any{"metric": "charge_curves"})))
		requireRefused(t, run(renovation, q(curves, "uc5", map[string]any{"metric": "charge_curves"})))
	})

	t.Run("promql", func(t *testing.T) {
		r := run(public, q(days, "promql", map[string]any{"expr": `sum(linky_consumption_daily_wh{perimeter="cluster-k02"})`, "step": "1d"}))
		require.NoError(t, r.Error)
		require.Len(t, r.Frames, 1)
		f := r.Frames[0]
		require.Equal(t, f.Rows(), lastDay.Sub(firstDay)+1)
		for row := range f.Rows() {
			ts, _ := f.Fields[0].ConcreteAt(row)
			v, _ := f.Fields[1].ConcreteAt(row)
			want, _ := d.sum("linky_index_wh", k02, localday.Of(ts.(time.Time)).AddDays(-1)) // stamped at the closing midnight
			require.InDelta(t, want, v.(float64), 1e-6)
		}
		requireRefused(t, run(public, q(days, "promql", map[string]any{"expr": `max(linky_consumption_daily_wh{perimeter="confluence"})`})))

		// An alert rule's query: concentrators silent for more than an hour.
		alert := q(backend.TimeRange{From: now.Add(-time.Hour), To: now}, "promql", map[string]any{
			"expr": `time() - max_over_time(linky_concentrator_last_collection_timestamp_seconds[1d]) > 3600`, "instant": true})
		r = run(operator, alert)
		require.NoError(t, r.Error)
		require.Len(t, r.Frames, 1, "only c02 stopped reporting")
		require.Equal(t, "c02", r.Frames[0].Fields[1].Labels["concentrator"])
		v, _ := r.Frames[0].Fields[1].ConcreteAt(0)
		require.InDelta(t, 10*3600, v.(float64), 1e-6)
		requireRefused(t, run(public, alert))
	})

	t.Run("template variables list only what the audience may query", func(t *testing.T) {
		vars := func(s *backend.DataSourceInstanceSettings, kind string) []string {
			code, body := pc.callResource(t, s, "GET", "variables/"+kind, nil)
			require.Equal(t, 200, code, body)
			var vs []struct{ Text, Value string }
			require.NoError(t, json.Unmarshal([]byte(body), &vs))
			var out []string
			for _, v := range vs {
				out = append(out, v.Text+"="+v.Value)
			}
			return out
		}
		require.ElementsMatch(t, []string{"cluster-k01=cluster-k01", "cluster-k02=cluster-k02", "confluence=confluence", "producers=producers"}, vars(public, "perimeter"))
		require.ElementsMatch(t, []string{"k01 Place Nautique=k01", "k02 Marché Gare=k02"}, vars(public, "cluster"))
		require.Empty(t, vars(public, "building"))
		require.ElementsMatch(t, []string{"Hikari=building-b1", "Les Passerelles=building-b2"}, vars(restricted, "building"))
		require.ElementsMatch(t, []string{"ev-stations=ev-stations", "uc3-b2=uc3-b2"}, vars(consented, "perimeter"))
	})

	t.Run("csv export of a panel", func(t *testing.T) {
		body, err := json.Marshal(map[string]any{"from": days.From.UnixMilli(), "to": days.To.UnixMilli(), "queries": []map[string]any{
			{"refId": "A", "queryType": "uc4", "metric": "clusters"},
			{"refId": "B", "queryType": "uc1", "perimeter": "building-b1"},
		}})
		require.NoError(t, err)
		code, out := pc.callResource(t, public, "POST", "export.csv", body)
		require.Equal(t, 200, code, out)
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		require.NoError(t, err)
		require.Equal(t, []string{"ref_id", "series", "time", "value", "unit", "notice"}, rows[0])
		seen := 0
		for _, row := range rows[1:] {
			if row[0] == "B" {
				require.Contains(t, row[5], refused, "a refused query is a row that says so")
				continue
			}
			ts, err := time.Parse(time.RFC3339, row[2])
			require.NoError(t, err)
			dd := localday.Of(ts)
			prms := map[string][]string{"cluster k01": k01, "cluster k02": k02}[row[1]]
			require.NotNil(t, prms, row[1])
			if row[1] == "cluster k01" && isHiddenDay(dd) {
				require.Empty(t, row[3])
				require.Equal(t, hidden, row[5])
				continue
			}
			want, _ := d.sum("linky_index_wh", prms, dd)
			got, err := strconv.ParseFloat(row[3], 64)
			require.NoError(t, err)
			require.InDelta(t, want, got, 1e-6, fmt.Sprint(row))
			seen++
		}
		require.Equal(t, 2*36-2, seen)

		code, out = pc.callResource(t, public, "GET", "exports/uc4.csv?from=2024-03-09&to=2024-03-12", nil)
		require.Equal(t, 200, code, out)
		require.Contains(t, out, "secret_statistique", "the server's export marks the hidden k01 days")
		code, _ = pc.callResource(t, public, "GET", "exports/uc1.csv?from=2024-03-09&to=2024-03-12", nil)
		require.Equal(t, 403, code)
	})
}

func requireRefused(t *testing.T, r backend.DataResponse) {
	t.Helper()
	require.Error(t, r.Error)
	require.Contains(t, r.Error.Error(), refused)
	require.Equal(t, backend.StatusForbidden, r.Status)
	require.NotEmpty(t, r.Frames)
	require.Contains(t, noticeText(r.Frames[0]), refused)
}

func noticeText(f *data.Frame) string {
	if f.Meta == nil {
		return ""
	}
	var out []string
	for _, n := range f.Meta.Notices {
		out = append(out, n.Text)
	}
	return strings.Join(out, "\n")
}

// byName indexes time series frames: display name → time → value (nil for
// a null, i.e. a hidden point).
func byName(t *testing.T, frames data.Frames) map[string]map[time.Time]*float64 {
	t.Helper()
	out := map[string]map[time.Time]*float64{}
	for _, f := range frames {
		if len(f.Fields) < 2 {
			continue
		}
		vf := f.Fields[1]
		name := f.Name
		if vf.Config != nil && vf.Config.DisplayNameFromDS != "" {
			name = vf.Config.DisplayNameFromDS
		}
		m := map[time.Time]*float64{}
		for row := range f.Rows() {
			ts, _ := f.Fields[0].ConcreteAt(row)
			var v *float64
			if x, ok := vf.ConcreteAt(row); ok {
				fv := x.(float64)
				v = &fv
			}
			m[ts.(time.Time).In(localday.Paris)] = v
		}
		out[name] = m
	}
	return out
}
