package dashboards_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/backend/plugin"
	"github.com/metergate/metergate/dashboards"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
	"github.com/metergate/metergate/remote/server/servertest"
)

// The simulated week ends on 2 April 2026, after the 23-hour day of 29
// March; the clock is two days later, so every simulated day is
// publishable (D+2). The year before is simulated too, for the panel
// that shifts its time range by a year.
var (
	until   = localday.Day{Year: 2026, Month: time.April, Day: 2}
	days    = 5
	clock   = until.AddDays(2).Start().Add(12 * time.Hour)
	rangeTo = clock
)

var tokens = map[string]string{
	"public":     servertest.PublicToken,
	"restricted": servertest.RestrictedToken,
	"consented":  servertest.ConsentedToken,
	"operator":   servertest.OperatorToken,
}

// TestPanelQueries runs every query of every panel of every dashboard
// through the plugin's QueryData, in process, against a real server
// holding the simulated district, with the token of the dashboard's
// audience: each must answer data or the privacy notice, never an error
// and never an empty panel.
func TestPanelQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates the district")
	}
	reg, err := district.Generate(district.Options{Seed: 1, Until: until})
	require.NoError(t, err)
	in := servertest.Start(t, servertest.Options{
		Registry: reg,
		Server:   server.Options{Now: func() time.Time { return clock }},
		Edit: func(c *config.Config) {
			for i := range c.Callers {
				if c.Callers[i].Audience == registry.Consented {
					c.Callers[i].UseCases = []registry.UseCase{registry.UC2, registry.UC3, registry.UC5}
				}
			}
			// The repository's rules must load in the real server too.
			c.RuleFiles = []string{"../rules/*.yml"}
		},
	})
	ctx := context.Background()
	began := time.Now()
	// Cluster k01's concentrators lose most of one night's readings: the
	// days around it have too few contributing meters for the public, and
	// the panels must say so instead of showing a number.
	silent := map[string]bool{}
	for _, m := range reg.Meters {
		if m.Cluster == "k01" && len(silent) < countCluster(reg, "k01")-50 {
			silent[m.PRM] = true
		}
	}
	lost := until.AddDays(-1).Start().UnixMilli()
	for _, u := range []localday.Day{{Year: until.Year - 1, Month: until.Month, Day: until.Day}, until} {
		s, err := sender.New(sender.Config{URL: in.URL + "/api/v1/write", Token: servertest.SenderToken})
		require.NoError(t, err)
		var w district.Writer = s
		if u == until {
			w = dropReadings{Writer: s, prms: silent, at: lost}
		}
		_, err = district.Simulate(ctx, reg, district.Config{Model: district.ModelOptions{Seed: 1, Until: u}, Days: days,
			Now: func() time.Time { return clock }}, w)
		require.NoError(t, err)
		require.NoError(t, s.Close(ctx))
	}
	t.Logf("simulated 2×%d days in %s", days, time.Since(began))

	for _, spec := range dashboards.All() {
		t.Run(spec.File, func(t *testing.T) {
			inst, err := plugin.NewDatasource(ctx, backend.DataSourceInstanceSettings{
				URL: in.URL, DecryptedSecureJSONData: map[string]string{"token": tokens[spec.Audience]}})
			require.NoError(t, err)
			dsrc := inst.(*plugin.Datasource)
			d := load(t, spec.File)
			vars := variables(t, dsrc, d)
			notices := 0
			for _, p := range flatPanels(d.Panels) {
				for _, env := range expand(p, vars) {
					if runPanel(t, dsrc, p, env) {
						notices++
					}
				}
			}
			if spec.Audience == "public" {
				require.Positive(t, notices, "the night k01 lost must show the privacy notice on public panels")
			}
		})
	}
}

// variables returns each template variable's values as a user may pick
// them: every value of a custom list; the default of a textbox or
// constant; what the plugin answers a query variable, through Grafana's
// regex (its first capture group is the value).
func variables(t *testing.T, dsrc *plugin.Datasource, d jsonDashboard) map[string][]string {
	out := map[string][]string{}
	for _, v := range d.Templating.List {
		q, _ := v.Query.(string)
		switch v.Type {
		case "custom":
			out[v.Name] = strings.Split(q, ",")
		case "textbox", "constant":
			out[v.Name] = []string{q}
		case "query":
			out[v.Name] = queryVariable(t, dsrc, q, v.Regex)
			require.NotEmpty(t, out[v.Name], "variable %s offers no value", v.Name)
		}
	}
	return out
}

// queryVariable runs a variable query (kind(uc)) as the frontend's
// metricFindQuery does, through the plugin's variables resource.
func queryVariable(t *testing.T, dsrc *plugin.Datasource, query, regex string) []string {
	kind, uc, _ := strings.Cut(strings.TrimSuffix(query, ")"), "(")
	path := "variables/" + kind
	if uc != "" {
		path += "?useCase=" + uc
	}
	var body []byte
	err := dsrc.CallResource(context.Background(), &backend.CallResourceRequest{Method: "GET", Path: "variables/" + kind, URL: path},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
			require.Equal(t, 200, r.Status, string(r.Body))
			body = append(body, r.Body...)
			return nil
		}))
	require.NoError(t, err)
	var values []struct{ Text, Value string }
	require.NoError(t, json.Unmarshal(body, &values))
	var re *regexp.Regexp
	if regex != "" {
		re = regexp.MustCompile(strings.TrimSuffix(strings.TrimPrefix(regex, "/"), "/"))
	}
	var out []string
	for _, v := range values {
		switch {
		case re == nil:
			out = append(out, v.Value)
		case re.NumSubexp() > 0:
			if m := re.FindStringSubmatch(v.Value); m != nil {
				out = append(out, m[1])
			}
		case re.MatchString(v.Value):
			out = append(out, v.Value)
		}
	}
	return out
}

// expand gives the variable assignments a panel is run with: one per
// value of every list variable it uses (a repeated panel is one panel per
// value in Grafana; a single-valued list is a user's choice).
func expand(p jsonPanel, vars map[string][]string) []map[string]string {
	envs := []map[string]string{{}}
	var raw strings.Builder
	raw.WriteString(p.Title)
	for _, q := range p.Targets {
		raw.Write(q.Raw)
	}
	for name, values := range vars {
		if !strings.Contains(raw.String(), "$"+name) {
			continue
		}
		var next []map[string]string
		for _, e := range envs {
			for _, v := range values {
				n := map[string]string{name: v}
				for k, x := range e {
					n[k] = x
				}
				next = append(next, n)
			}
		}
		envs = next
	}
	return envs
}

func interpolate(s string, env map[string]string) string {
	for k, v := range env {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
		s = strings.ReplaceAll(s, "$"+k, v)
	}
	return s
}

// timeRange is the dashboard's range in the test: the simulated week,
// shifted as the panel asks.
func timeRange(t *testing.T, p jsonPanel) backend.TimeRange {
	from := until.AddDays(1 - days).Start()
	to := rangeTo
	switch p.TimeShift {
	case "":
	case "1y":
		from, to = from.AddDate(-1, 0, 0), to.AddDate(-1, 0, 0)
	default:
		t.Fatalf("panel %q: time shift %q not understood by the test", p.Title, p.TimeShift)
	}
	return backend.TimeRange{From: from, To: to}
}

func runPanel(t *testing.T, dsrc *plugin.Datasource, p jsonPanel, env map[string]string) (noticed bool) {
	t.Helper()
	name := interpolate(p.Title, env)
	tr := timeRange(t, p)
	req := &backend.QueryDataRequest{}
	for _, q := range p.Targets {
		raw := interpolate(string(q.Raw), env)
		var dq struct {
			RefID     string `json:"refId"`
			QueryType string `json:"queryType"`
		}
		require.NoError(t, json.Unmarshal([]byte(raw), &dq))
		req.Queries = append(req.Queries, backend.DataQuery{RefID: dq.RefID, QueryType: dq.QueryType, JSON: json.RawMessage(raw),
			TimeRange: tr, Interval: time.Hour, MaxDataPoints: 1000})
	}
	resp, err := dsrc.QueryData(context.Background(), req)
	require.NoError(t, err, name)
	for _, q := range req.Queries {
		r, ok := resp.Responses[q.RefID]
		require.True(t, ok, "%s: no answer to query %s", name, q.RefID)
		require.NoError(t, r.Error, "%s: query %s (%s)", name, q.RefID, q.JSON)
		values, notice := contents(r.Frames)
		require.True(t, values > 0 || notice, "%s: query %s answered neither data nor the privacy notice (%s)", name, q.RefID, q.JSON)
		if notice && values == 0 {
			t.Logf("%s: query %s: privacy notice", name, q.RefID)
		}
		noticed = noticed || notice
	}
	return noticed
}

// dropReadings loses the daily index readings of some meters stamped at
// one instant, as when a concentrator misses a collection.
type dropReadings struct {
	district.Writer
	prms map[string]bool
	at   int64
}

func (d dropReadings) Write(ctx context.Context, series []prompb.TimeSeries) error {
	for i := range series {
		ts := &series[i]
		rmp, name := "", ""
		for _, l := range ts.Labels {
			switch l.Name {
			case "rmp":
				rmp = l.Value
			case "__name__":
				name = l.Value
			}
		}
		if name != "linky_index_wh" || !d.prms[rmp] {
			continue
		}
		kept := ts.Samples[:0]
		for _, smp := range ts.Samples {
			if smp.Timestamp != d.at {
				kept = append(kept, smp)
			}
		}
		ts.Samples = kept
	}
	return d.Writer.Write(ctx, series)
}

func countCluster(reg *registry.Registry, cluster string) int {
	n := 0
	for _, m := range reg.Meters {
		if m.Cluster == cluster {
			n++
		}
	}
	return n
}

// contents counts the non-null values of the frames and tells whether one
// carries the privacy notice.
func contents(frames data.Frames) (int, bool) {
	n, notice := 0, false
	for _, f := range frames {
		if f.Meta != nil {
			for _, nt := range f.Meta.Notices {
				if strings.Contains(nt.Text, plugin.HiddenNotice) {
					notice = true
				}
			}
		}
		for _, fd := range f.Fields {
			if fd.Type().Time() {
				continue
			}
			for i := 0; i < fd.Len(); i++ {
				if v, ok := fd.ConcreteAt(i); ok && v != nil {
					n++
				}
			}
		}
	}
	return n, notice
}

// TestContents shows what TestPanelQueries accepts: values, or the
// plugin's privacy notice on an empty answer; an empty answer without the
// notice (an empty panel by accident) is neither.
func TestContents(t *testing.T) {
	empty := data.NewFrame("x", data.NewField("Time", nil, []time.Time{}), data.NewField("Value", nil, []float64{}))
	n, notice := contents(data.Frames{empty})
	require.False(t, n > 0 || notice, "an empty frame passes")

	hidden := data.NewFrame("hidden")
	hidden.SetMeta(&data.FrameMeta{Notices: []data.Notice{{Text: "3 of 5 points " + plugin.HiddenNotice + " contributed to them."}}})
	n, notice = contents(data.Frames{hidden})
	require.True(t, notice)
	require.Zero(t, n)

	full := data.NewFrame("x", data.NewField("Time", nil, []time.Time{clock}), data.NewField("Value", nil, []float64{1}))
	n, _ = contents(data.Frames{full})
	require.Equal(t, 1, n)
}
