package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/backend/plugin"
	"github.com/metergate/metergate/dashboards"
	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/pkg/store"
	"github.com/metergate/metergate/remote/server"
)

// The dashboard bench (`metergate bench -modes dashboard`) refreshes every
// panel of the neighbourhood dashboard (UC4, "Confluence — One Planet
// performance", public audience) over a year of the simulated district
// through the Grafana plugin's QueryData, the real path: plugin → HTTP →
// metergate server → privacy gate. It compares that with the raw PromQL
// computing the same figures, evaluated by Prometheus's engine on the same
// TSDB without the gate, and checks that both give the same numbers
// wherever the gate publishes one.

// DashboardFile is the dashboard the bench refreshes.
const DashboardFile = "confluence-one-planet.json"

// DashboardConfig of a dashboard bench run.
type DashboardConfig struct {
	WorkDir string
	// Days of the dashboard's time range, ending with the last
	// publishable day; the fixture holds a year more for the panel shifted
	// by a year, and a day before for the first day's opening reading.
	Days int
	Reps int
	Log  io.Writer
}

// DashboardReport is what a dashboard bench run measured.
type DashboardReport struct {
	Days, Queries int
	// Gated and Raw are the refresh times of each repetition (the sum of
	// the panels' query times, panel after panel).
	Gated, Raw []time.Duration
	// PerPanel is the median gated and raw time by panel title.
	PerPanel []PanelTime
	// Checked counts the published points compared with the raw figures;
	// Hidden the points the gate hid (not compared); Mismatches lists the
	// differences (none expected).
	Checked, Hidden int
	Mismatches      []string
	Samples         int64
	// OtherCores is the CPU other processes used during each repetition,
	// in cores: the machine's noise (the bench, the plugin and the server
	// are one process).
	OtherCores []float64
}

// PanelTime is one panel's median refresh time.
type PanelTime struct {
	Title      string
	Queries    int
	Gated, Raw time.Duration
}

// Ratios are gated ÷ raw refresh times, one per repetition.
func (r *DashboardReport) Ratios() []float64 {
	var out []float64
	for i := range min(len(r.Gated), len(r.Raw)) {
		out = append(out, r.Gated[i].Seconds()/r.Raw[i].Seconds())
	}
	return out
}

// Dashboard is a running dashboard bench: the district's TSDB, a metergate
// server over it, the plugin pointed at the server with a public token,
// and the panels' queries with their raw equivalents.
type Dashboard struct {
	District *District
	Plugin   *plugin.Datasource
	Engine   *promql.Engine
	Panels   []Panel
	// From and To are the dashboard's time range.
	From, To time.Time
	stop     func() error
}

// Panel is one panel of the dashboard as Grafana refreshes it: a repeated
// panel is one Panel per value of its variable.
type Panel struct {
	Title   string
	Queries []backend.DataQuery
	// Raw holds, by RefID, the raw PromQL of the same figure.
	Raw map[string]RawQuery
}

// RawQuery is the ungated PromQL computing a panel query's figures.
type RawQuery struct {
	Expr       string
	Start, End time.Time
	// Divide, when set, divides each series by the value for its cluster
	// label (clusters' inhabitants, which the plugin divides by after the
	// gate answers: the storage holds no series to divide by in PromQL).
	Divide map[string]float64
}

// The raw evaluation time of a day's figure: the local midnight closing
// day D falls at 22:00 or 23:00 UTC on D's date, so 23:30 UTC is after it
// whatever the offset, and a 24 h step stays on it across 23- and 25-hour
// days. A window of 26 h then holds exactly the two midnights around D.
const (
	rawEvalUTC = 23*time.Hour + 30*time.Minute
	rawWindow  = "26h"
)

func rawTime(d localday.Day) time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Add(rawEvalUTC)
}

// rawDay is the day whose figure a raw evaluation at t carries.
func rawDay(t time.Time) localday.Day {
	u := t.UTC().Add(-rawEvalUTC)
	return localday.Day{Year: u.Year(), Month: u.Month(), Day: u.Day()}
}

// StartDashboard builds the fixture in dir (days of range, plus a year
// and a day), starts a metergate server over it and the plugin.
func StartDashboard(ctx context.Context, dir string, days int, log io.Writer) (*Dashboard, error) {
	// Any fixed day works; this one puts both DST changes in the range.
	until := localday.Day{Year: 2026, Month: time.November, Day: 20}
	total := days + 365 + 1
	d, err := BuildDistrict(ctx, filepath.Join(dir, "tsdb"), until, total, log)
	if err != nil {
		return nil, err
	}
	clock := until.AddDays(2).Start().Add(12 * time.Hour)
	db := &Dashboard{District: d, From: until.AddDays(1 - days).Start(), To: clock,
		Engine: promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute})}
	url, token, stop, err := startServer(ctx, filepath.Join(dir, "server"), d, clock)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	db.stop = func() error { return errors.Join(stop(), d.Close()) }
	inst, err := plugin.NewDatasource(ctx, backend.DataSourceInstanceSettings{Name: "metergate", Type: plugin.ID, URL: url,
		DecryptedSecureJSONData: map[string]string{"token": token}})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("starting the plugin: %w", err)
	}
	db.Plugin = inst.(*plugin.Datasource)
	if db.Panels, err = dashboardPanels(d.Registry, db.From, db.To, db.variable); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// variable answers a query variable through the plugin's variables
// resource, as the frontend's metricFindQuery does: "kind(useCase)", then
// Grafana's regex, whose first capture group is the value.
func (db *Dashboard) variable(query, regex string) ([]string, error) {
	kind, uc, _ := strings.Cut(strings.TrimSuffix(query, ")"), "(")
	path := "variables/" + kind
	if uc != "" {
		path += "?useCase=" + uc
	}
	var body []byte
	status := 0
	err := db.Plugin.CallResource(context.Background(), &backend.CallResourceRequest{Method: "GET", Path: "variables/" + kind, URL: path},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
			if r.Status != 0 {
				status = r.Status
			}
			body = append(body, r.Body...)
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", path, err)
	}
	if status != 200 {
		return nil, fmt.Errorf("%s answered %d: %s", path, status, body)
	}
	var values []struct{ Text, Value string }
	if err := json.Unmarshal(body, &values); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = v.Value
	}
	return applyRegex(names, regex)
}

// applyRegex filters variable values as Grafana does with a variable's
// regex (/…/): the first capture group is the value when there is one.
func applyRegex(values []string, regex string) ([]string, error) {
	if regex == "" {
		return values, nil
	}
	re, err := regexp.Compile(strings.TrimSuffix(strings.TrimPrefix(regex, "/"), "/"))
	if err != nil {
		return nil, fmt.Errorf("variable regex %s: %w", regex, err)
	}
	var out []string
	for _, v := range values {
		switch m := re.FindStringSubmatch(v); {
		case m == nil:
		case len(m) > 1:
			out = append(out, m[1])
		default:
			out = append(out, v)
		}
	}
	return out, nil
}

// Close stops the server and closes the TSDB.
func (db *Dashboard) Close() error {
	if db.Plugin != nil {
		db.Plugin.Dispose()
	}
	return db.stop()
}

// borrowed lends the fixture's TSDB to the server, which must not close it.
type borrowed struct{ *store.Embedded }

func (borrowed) Close() error { return nil }

// startServer runs `metergate serve` in process over the district's TSDB,
// with its registry, one public caller and the given clock.
func startServer(ctx context.Context, dir string, d *District, clock time.Time) (url, token string, stop func() error, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, fmt.Errorf("making a token: %w", err)
	}
	token = hex.EncodeToString(b)
	if err := registry.Save(filepath.Join(dir, "registry"), d.Registry); err != nil {
		return "", "", nil, fmt.Errorf("saving the registry: %w", err)
	}
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.RuleFiles = nil
	cfg.Callers = []config.Caller{{Name: "opendata", Token: token, Audience: registry.Public}}
	y, err := yaml.Marshal(&cfg)
	if err != nil {
		return "", "", nil, fmt.Errorf("encoding the configuration: %w", err)
	}
	path := filepath.Join(dir, "metergate.yml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		return "", "", nil, fmt.Errorf("writing %s: %w", path, err)
	}
	loaded, err := config.Load(path)
	if err != nil {
		return "", "", nil, err
	}
	srv, err := server.New(loaded, server.Options{Store: borrowed{d.DB}, Now: func() time.Time { return clock },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return "", "", nil, fmt.Errorf("starting metergate: %w", err)
	}
	addr, err := srv.Listen()
	if err != nil {
		return "", "", nil, fmt.Errorf("listening: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	return "http://" + addr.String(), token, func() error { cancel(); return <-done }, nil
}

// dashboard JSON, as much as the bench reads of it.
type jsonDashboard struct {
	Panels     []jsonPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
			Regex string `json:"regex"`
		} `json:"list"`
	} `json:"templating"`
}

type jsonPanel struct {
	Title     string            `json:"title"`
	Type      string            `json:"type"`
	TimeShift string            `json:"timeShift"`
	Repeat    string            `json:"repeat"`
	Targets   []json.RawMessage `json:"targets"`
	Panels    []jsonPanel       `json:"panels"`
}

var varRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// variableValues answers a query variable (its query and Grafana's regex)
// as the dashboard's data source does.
type variableValues func(query, regex string) ([]string, error)

// dashboardPanels reads the neighbourhood dashboard as generated by the
// dashboards package and lists its panels as one refresh runs them: list
// and query variables expanded (the household quartiles are repeated for
// each cluster the variable offers), textboxes and constants at their
// defaults, time shifts applied. It pairs every query with its raw
// equivalent.
func dashboardPanels(reg *registry.Registry, from, to time.Time, resolve variableValues) ([]Panel, error) {
	var spec *dashboards.Spec
	for _, s := range dashboards.All() {
		if s.File == DashboardFile {
			spec = &s
		}
	}
	if spec == nil {
		return nil, fmt.Errorf("dashboard %s is not in the dashboards package", DashboardFile)
	}
	b, err := dashboards.Marshal(*spec)
	if err != nil {
		return nil, err
	}
	var d jsonDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("reading %s: %w", DashboardFile, err)
	}
	vars := map[string][]string{}
	for _, v := range d.Templating.List {
		q, _ := v.Query.(string)
		switch v.Type {
		case "custom":
			vars[v.Name] = strings.Split(q, ",")
		case "textbox", "constant":
			vars[v.Name] = []string{q}
		case "query":
			values, err := resolve(q, v.Regex)
			if err != nil {
				return nil, fmt.Errorf("variable %s: %w", v.Name, err)
			}
			if len(values) == 0 {
				return nil, fmt.Errorf("variable %s offers no value", v.Name)
			}
			vars[v.Name] = values
		case "datasource":
			// The plugin is called directly: the data source's uid
			// only names it.
			vars[v.Name] = []string{"metergate"}
		}
	}
	rw := newRawRewriter(reg, from, to)
	var out []Panel
	var walk func([]jsonPanel) error
	walk = func(ps []jsonPanel) error {
		for _, p := range ps {
			if err := walk(p.Panels); err != nil {
				return err
			}
			if len(p.Targets) == 0 {
				continue
			}
			values := []string{""}
			if p.Repeat != "" {
				values = vars[p.Repeat]
			}
			for _, rv := range values {
				env := map[string]string{}
				for k, v := range vars {
					env[k] = v[0]
				}
				if p.Repeat != "" {
					env[p.Repeat] = rv
				}
				panel, err := buildPanel(p, env, from, to, rw)
				if err != nil {
					return err
				}
				out = append(out, panel)
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	return out, nil
}

func interpolate(s string, env map[string]string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		if v, ok := env[name]; ok {
			return v
		}
		missing = append(missing, name)
		return m
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("variables %v have no value", missing)
	}
	return out, nil
}

func buildPanel(p jsonPanel, env map[string]string, from, to time.Time, rw *rawRewriter) (Panel, error) {
	title, err := interpolate(p.Title, env)
	if err != nil {
		return Panel{}, fmt.Errorf("panel %q: %w", p.Title, err)
	}
	switch p.TimeShift {
	case "":
	case "1y":
		from, to = from.AddDate(-1, 0, 0), to.AddDate(-1, 0, 0)
	default:
		return Panel{}, fmt.Errorf("panel %q: time shift %q not understood by the bench", title, p.TimeShift)
	}
	panel := Panel{Title: title, Raw: map[string]RawQuery{}}
	for _, raw := range p.Targets {
		s, err := interpolate(string(raw), env)
		if err != nil {
			return Panel{}, fmt.Errorf("panel %q: %w", title, err)
		}
		var q dashboards.Query
		if err := json.Unmarshal([]byte(s), &q); err != nil {
			return Panel{}, fmt.Errorf("panel %q: %w", title, err)
		}
		dq := backend.DataQuery{RefID: q.RefID, QueryType: q.QueryType, JSON: json.RawMessage(s),
			TimeRange: backend.TimeRange{From: from, To: to}, Interval: time.Hour, MaxDataPoints: 1000}
		panel.Queries = append(panel.Queries, dq)
		rq, err := rw.raw(q, from, to)
		if err != nil {
			return Panel{}, fmt.Errorf("panel %q, query %s: %w", title, q.RefID, err)
		}
		panel.Raw[q.RefID] = rq
	}
	return panel, nil
}

// rawRewriter turns the gate's daily forms into raw PromQL on the index
// registers.
type rawRewriter struct {
	reg      *registry.Registry
	from, to time.Time
	members  map[string]string // perimeter → RMP regexp
}

func newRawRewriter(reg *registry.Registry, from, to time.Time) *rawRewriter {
	return &rawRewriter{reg: reg, from: from, to: to, members: map[string]string{}}
}

// useCaseExpr is the PromQL the plugin sends for each UC4 metric
// (backend/plugin/usecases.go), before the rewrite; the bench's test
// checks it against the plugin's executed query string.
func useCaseExpr(q dashboards.Query, reg *registry.Registry) (expr string, divide map[string]float64, err error) {
	sel := fmt.Sprintf(`%s{perimeter=%q}`, catalogue.DailyConsumption, q.Perimeter)
	switch q.Metric {
	case "consumption":
		return "sum(" + sel + ")", nil, nil
	case "per_inhabitant":
		n := 0
		for _, c := range reg.Clusters {
			n += c.Inhabitants
		}
		return fmt.Sprintf("sum(%s) / %d", sel, n), nil, nil
	case "clusters":
		return "sum by (cluster) (" + sel + ")", nil, nil
	case "clusters_per_inhabitant":
		divide = map[string]float64{}
		for _, c := range reg.Clusters {
			divide[c.ID] = float64(c.Inhabitants)
		}
		return "sum by (cluster) (" + sel + ")", divide, nil
	case "injected":
		return fmt.Sprintf(`sum(%s{perimeter=%q})`, catalogue.DailyInjection, q.Perimeter), nil, nil
	case "self_consumed":
		return fmt.Sprintf(`sum(%s{perimeter=%q}) - sum(%s{perimeter=%q})`, catalogue.DailyGeneration, q.Perimeter,
			catalogue.DailyInjection, q.Perimeter), nil, nil
	}
	return "", nil, fmt.Errorf("no raw equivalent of %s metric %q", q.QueryType, q.Metric)
}

func (rw *rawRewriter) raw(q dashboards.Query, from, to time.Time) (RawQuery, error) {
	var expr string
	var divide map[string]float64
	switch {
	case q.QueryType == dashboards.PromQL:
		expr = q.Expr
	case q.QueryType == dashboards.UC4:
		var err error
		if expr, divide, err = useCaseExpr(q, rw.reg); err != nil {
			return RawQuery{}, err
		}
	default:
		return RawQuery{}, fmt.Errorf("no raw equivalent of query type %s", q.QueryType)
	}
	raw, err := rw.rewrite(expr, from, to)
	if err != nil {
		return RawQuery{}, err
	}
	// The gate's points are the local days whose closing midnight is in
	// [from, to], up to the last publishable day (the range is within it).
	first := localday.Of(from)
	if first.Start().Before(from) {
		first = first.AddDays(1)
	}
	last := localday.Of(to).AddDays(-1)
	return RawQuery{Expr: raw, Start: rawTime(first.AddDays(-1)), End: rawTime(last), Divide: divide}, nil
}

// rewrite replaces each daily metric over a perimeter, say
// linky_consumption_daily_wh{perimeter="p"}, by the difference of its
// index register between the two local midnights of the day, over the
// perimeter's members: idelta(linky_index_wh{rmp=~"<members>"}[26h]).
// Members are the meters the registry puts in the perimeter on some day of
// the range; a meter not in service has no reading and contributes nothing,
// as in the gate.
func (rw *rawRewriter) rewrite(expr string, from, to time.Time) (string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", expr, err)
	}
	var werr error
	out := rewriteNode(e, func(vs *parser.VectorSelector) parser.Expr {
		m, ok := catalogue.Lookup(vs.Name)
		if !ok || m.DerivedFrom == "" {
			werr = fmt.Errorf("%s is not a derived daily metric", vs.Name)
			return vs
		}
		perimeter := ""
		for _, lm := range vs.LabelMatchers {
			if lm.Name == "perimeter" && lm.Type == labels.MatchEqual {
				perimeter = lm.Value
			}
		}
		re, err := rw.memberRegexp(perimeter, from, to)
		if err != nil {
			werr = err
			return vs
		}
		sel := &parser.VectorSelector{Name: m.DerivedFrom, LabelMatchers: []*labels.Matcher{
			labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, m.DerivedFrom)}}
		if re != "" {
			sel.LabelMatchers = append(sel.LabelMatchers, labels.MustNewMatcher(labels.MatchRegexp, catalogue.LabelRMP, re))
		}
		window, _ := time.ParseDuration(rawWindow)
		return &parser.Call{Func: parser.Functions["idelta"], Args: parser.Expressions{&parser.MatrixSelector{VectorSelector: sel, Range: window}}}
	})
	if werr != nil {
		return "", werr
	}
	return out.String(), nil
}

// rewriteNode rebuilds the expression with f applied to every vector
// selector (only the node types the gate allows in its forms).
func rewriteNode(e parser.Expr, f func(*parser.VectorSelector) parser.Expr) parser.Expr {
	switch n := e.(type) {
	case *parser.VectorSelector:
		return f(n)
	case *parser.AggregateExpr:
		c := *n
		c.Expr = rewriteNode(n.Expr, f)
		if n.Param != nil {
			c.Param = rewriteNode(n.Param, f)
		}
		return &c
	case *parser.BinaryExpr:
		c := *n
		c.LHS, c.RHS = rewriteNode(n.LHS, f), rewriteNode(n.RHS, f)
		return &c
	case *parser.ParenExpr:
		c := *n
		c.Expr = rewriteNode(n.Expr, f)
		return &c
	case *parser.UnaryExpr:
		c := *n
		c.Expr = rewriteNode(n.Expr, f)
		return &c
	}
	return e
}

// memberRegexp is the rmp regexp of a perimeter's members over the range,
// or "" when the perimeter is the whole district on every day: its
// members are every registered meter, and the district sends no other, so
// the raw query selects by name alone, as an analyst would write it (and
// the check against the gate's numbers would say if that were wrong).
func (rw *rawRewriter) memberRegexp(perimeter string, from, to time.Time) (string, error) {
	key := fmt.Sprintf("%s|%d|%d", perimeter, from.Unix(), to.Unix())
	if re, ok := rw.members[key]; ok {
		return re, nil
	}
	set := map[string]bool{}
	found, whole := false, true
	// The day before the range's first point too: its opening reading.
	for d := localday.Of(from).AddDays(-1); !d.After(localday.Of(to)); d = d.AddDays(1) {
		p, ok := rw.reg.Perimeter(perimeter, d)
		if !ok {
			continue
		}
		found = true
		whole = whole && reflect.DeepEqual(p.Select, registry.Selector{All: true})
		for _, prm := range rw.reg.Members(p, d) {
			set[prm] = true
		}
	}
	if !found {
		return "", fmt.Errorf("perimeter %q is not in the registry", perimeter)
	}
	if whole {
		rw.members[key] = ""
		return "", nil
	}
	prms := make([]string, 0, len(set))
	for prm := range set {
		prms = append(prms, regexp.QuoteMeta(prm))
	}
	slices.Sort(prms)
	re := strings.Join(prms, "|")
	rw.members[key] = re
	return re, nil
}

// series values by series key (the cluster, or "" for a single series)
// and day.
type panelValues map[string]map[localday.Day]float64

// RefreshGated runs every panel through the plugin, as one dashboard
// refresh does (panel after panel), and returns the time of each panel and
// what it answered.
func (db *Dashboard) RefreshGated(ctx context.Context) ([]time.Duration, []map[string]*backend.DataResponse, error) {
	times := make([]time.Duration, len(db.Panels))
	answers := make([]map[string]*backend.DataResponse, len(db.Panels))
	for i, p := range db.Panels {
		began := time.Now()
		resp, err := db.Plugin.QueryData(ctx, &backend.QueryDataRequest{Queries: p.Queries})
		times[i] = time.Since(began)
		if err != nil {
			return nil, nil, fmt.Errorf("panel %q: %w", p.Title, err)
		}
		answers[i] = map[string]*backend.DataResponse{}
		for _, q := range p.Queries {
			r, ok := resp.Responses[q.RefID]
			if !ok {
				return nil, nil, fmt.Errorf("panel %q: no answer to query %s", p.Title, q.RefID)
			}
			if r.Error != nil {
				return nil, nil, fmt.Errorf("panel %q, query %s: %w", p.Title, q.RefID, r.Error)
			}
			answers[i][q.RefID] = &r
		}
	}
	return times, answers, nil
}

// RefreshRaw evaluates every panel's raw queries with Prometheus's engine
// directly on the TSDB, and returns the time of each panel and the values.
func (db *Dashboard) RefreshRaw(ctx context.Context) ([]time.Duration, []map[string]panelValues, error) {
	times := make([]time.Duration, len(db.Panels))
	answers := make([]map[string]panelValues, len(db.Panels))
	for i, p := range db.Panels {
		answers[i] = map[string]panelValues{}
		began := time.Now()
		for _, q := range p.Queries {
			rq := p.Raw[q.RefID]
			f, err := db.evalRaw(ctx, rq)
			if err != nil {
				return nil, nil, fmt.Errorf("panel %q, raw query %s: %w", p.Title, q.RefID, err)
			}
			answers[i][q.RefID] = f
		}
		times[i] = time.Since(began)
	}
	return times, answers, nil
}

func (db *Dashboard) evalRaw(ctx context.Context, rq RawQuery) (panelValues, error) {
	q, err := db.Engine.NewRangeQuery(ctx, db.District.DB, nil, rq.Expr, rq.Start, rq.End, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	r := q.Exec(ctx)
	if r.Err != nil {
		return nil, r.Err
	}
	m, err := r.Matrix()
	if err != nil {
		return nil, err
	}
	out := panelValues{}
	for _, s := range m {
		k := s.Metric.Get(catalogue.LabelCluster)
		div := 1.0
		if rq.Divide != nil {
			if div = rq.Divide[k]; div == 0 {
				return nil, fmt.Errorf("no divisor for cluster %q", k)
			}
		}
		vals := map[localday.Day]float64{}
		for _, p := range s.Floats {
			vals[rawDay(time.UnixMilli(p.T))] = p.F / div
		}
		out[k] = vals
	}
	return out, nil
}

// gatedFigures reads the plugin's frames back as values by series key and
// day, and counts the privacy notices. Use-case figures are stamped at the
// start of the day they describe (the plugin restamps them); PromQL answers
// keep the gate's stamp, the local midnight closing the day.
func gatedFigures(r *backend.DataResponse, stampedAtOwnDay bool) (panelValues, int) {
	out := panelValues{}
	hidden := 0
	for _, f := range r.Frames {
		if f.Meta != nil {
			for _, n := range f.Meta.Notices {
				if strings.Contains(n.Text, plugin.HiddenNotice) {
					hidden++
				}
			}
		}
		var times *data.Field
		for _, fd := range f.Fields {
			if fd.Type().Time() {
				times = fd
			}
		}
		if times == nil {
			continue
		}
		for _, fd := range f.Fields {
			if fd.Type().Time() {
				continue
			}
			k := fd.Labels["cluster"]
			vals := out[k]
			if vals == nil {
				vals = map[localday.Day]float64{}
				out[k] = vals
			}
			for i := 0; i < fd.Len(); i++ {
				v, ok := fd.ConcreteAt(i)
				if !ok || v == nil {
					continue
				}
				t, _ := times.ConcreteAt(i)
				d := localday.Of(t.(time.Time))
				if !stampedAtOwnDay {
					d = d.AddDays(-1)
				}
				vals[d] = v.(float64)
			}
		}
	}
	return out, hidden
}

// compare checks every published point against the raw figure of the same
// series and day; it returns the points compared and the differences.
func compare(title, ref string, gated, raw panelValues) (int, []string) {
	n := 0
	var bad []string
	for k, vals := range gated {
		for d, v := range vals {
			n++
			rv, ok := raw[k][d]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s %s %q %s: gated %g, no raw value", title, ref, k, d, v))
			case math.Abs(v-rv) > 1e-9*math.Max(1, math.Abs(rv)):
				bad = append(bad, fmt.Sprintf("%s %s %q %s: gated %g, raw %g", title, ref, k, d, v, rv))
			}
		}
	}
	return n, bad
}

// roundsUpKWh reports whether the gate rounds a query's values up to the
// kWh (quartiles, POLICY.md): the raw figure is rounded the same way
// before comparing.
func roundsUpKWh(expr string) bool { return strings.HasPrefix(strings.TrimSpace(expr), "quantile(") }

// Check compares one gated refresh with one raw refresh.
func (db *Dashboard) Check(gated []map[string]*backend.DataResponse, raw []map[string]panelValues) (checked, hidden int, bad []string) {
	for i, p := range db.Panels {
		for _, q := range p.Queries {
			var dq dashboards.Query
			_ = json.Unmarshal(q.JSON, &dq)
			// PromQL answers keep the gate's stamps (the start of the day
			// after the one described); use-case answers are restamped by
			// the plugin at the start of the day described.
			g, h := gatedFigures(gated[i][q.RefID], dq.QueryType != dashboards.PromQL)
			hidden += h
			r := raw[i][q.RefID]
			if roundsUpKWh(dq.Expr) {
				for _, vals := range r {
					for d, v := range vals {
						vals[d] = math.Ceil(v/1000) * 1000
					}
				}
			}
			n, b := compare(p.Title, q.RefID, g, r)
			if n == 0 && h == 0 {
				b = append(b, fmt.Sprintf("%s %s: neither a published point nor the privacy notice", p.Title, q.RefID))
			}
			checked += n
			bad = append(bad, b...)
		}
	}
	return checked, hidden, bad
}

// RunDashboard builds the fixture, runs the refreshes Reps times side by
// side (gated then raw, alternating the order), checks every published
// number of the first repetition against the raw one, and reports.
func RunDashboard(ctx context.Context, c DashboardConfig) (*DashboardReport, error) {
	logf := func(format string, args ...any) {
		if c.Log != nil {
			fmt.Fprintf(c.Log, "[%s] %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
		}
	}
	dir := filepath.Join(c.WorkDir, "dashboard")
	// The server's directory (registry, audit log) is fresh each run; the
	// district's TSDB is reused when it holds the same days.
	if err := os.RemoveAll(filepath.Join(dir, "server")); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", dir, err)
	}
	logf("simulating %d days of the district into an embedded TSDB", c.Days+366)
	db, err := StartDashboard(ctx, dir, c.Days, c.Log)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rep := &DashboardReport{Days: c.Days, Samples: db.District.Samples}
	for _, p := range db.Panels {
		rep.Queries += len(p.Queries)
	}
	logf("%d panels, %d queries over %s – %s", len(db.Panels), rep.Queries, db.From.Format(time.DateOnly), db.To.Format(time.DateOnly))
	// A first refresh of each, untimed: page cache, chunk caches, the
	// server's and the engine's first allocations.
	if _, _, err := db.RefreshGated(ctx); err != nil {
		return nil, err
	}
	if _, _, err := db.RefreshRaw(ctx); err != nil {
		return nil, err
	}
	gatedPanels := make([][]time.Duration, len(db.Panels))
	rawPanels := make([][]time.Duration, len(db.Panels))
	for r := 0; r < c.Reps; r++ {
		var gt, rt []time.Duration
		var ga []map[string]*backend.DataResponse
		var ra []map[string]panelValues
		gatedFirst := r%2 == 0
		began, busy0, self0 := time.Now(), cpuOrZero(BusyCPU), cpuOrZero(func() (time.Duration, error) { return CPUTime(os.Getpid()) })
		for _, gated := range []bool{gatedFirst, !gatedFirst} {
			if gated {
				gt, ga, err = db.RefreshGated(ctx)
			} else {
				rt, ra, err = db.RefreshRaw(ctx)
			}
			if err != nil {
				return nil, err
			}
		}
		busy, self := cpuOrZero(BusyCPU)-busy0, cpuOrZero(func() (time.Duration, error) { return CPUTime(os.Getpid()) })-self0
		rep.OtherCores = append(rep.OtherCores, max(0, (busy-self).Seconds()/time.Since(began).Seconds()))
		rep.Gated, rep.Raw = append(rep.Gated, sum(gt)), append(rep.Raw, sum(rt))
		for i := range db.Panels {
			gatedPanels[i], rawPanels[i] = append(gatedPanels[i], gt[i]), append(rawPanels[i], rt[i])
		}
		logf("repetition %d: refresh through the plugin %s, raw PromQL %s, ratio %.2f", r+1,
			rep.Gated[r].Round(time.Millisecond), rep.Raw[r].Round(time.Millisecond), rep.Gated[r].Seconds()/rep.Raw[r].Seconds())
		if r == 0 {
			rep.Checked, rep.Hidden, rep.Mismatches = db.Check(ga, ra)
		}
	}
	// Repeated panels (one per cluster) are summed by title.
	byTitle := map[string]*PanelTime{}
	var order []string
	for i, p := range db.Panels {
		title := p.Title
		if strings.HasPrefix(title, "Household consumption quartiles") {
			title = "Household consumption quartiles — each cluster"
		}
		pt := byTitle[title]
		if pt == nil {
			pt = &PanelTime{Title: title}
			byTitle[title] = pt
			order = append(order, title)
		}
		pt.Queries += len(p.Queries)
		pt.Gated += medianDuration(gatedPanels[i])
		pt.Raw += medianDuration(rawPanels[i])
	}
	for _, t := range order {
		rep.PerPanel = append(rep.PerPanel, *byTitle[t])
	}
	return rep, nil
}

// cpuOrZero reads a CPU counter; without /proc (not Linux) the noise is
// not reported rather than the bench failing.
func cpuOrZero(f func() (time.Duration, error)) time.Duration {
	d, err := f()
	if err != nil {
		return 0
	}
	return d
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// WriteTable prints the dashboard bench's table: the ratio of the refresh
// through the plugin to the raw PromQL, min / median / max over the
// repetitions, against the 2× target, then the panels' medians.
func (r *DashboardReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shape\tmetergate\tfigure\tgated ÷ raw\tgated s\traw s\ttarget\tmet (median)")
	ratios := r.Ratios()
	secs := func(ds []time.Duration) []float64 {
		var out []float64
		for _, d := range ds {
			out = append(out, d.Seconds())
		}
		return out
	}
	fmt.Fprintf(tw, "dashboard\tplugin → server → gate\trefresh of every panel, %d days (%d queries)\t%s\t%s\t%s\t≤2.0×\t%s\n",
		r.Days, r.Queries, spread(ratios), spread(secs(r.Gated)), spread(secs(r.Raw)), yesNo(len(ratios) > 0 && median(ratios) <= 2))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Ratios are the refresh through the plugin's QueryData (HTTP to metergate serve, the privacy gate, frames) divided by the raw")
	fmt.Fprintln(w, "PromQL of the same figures on the same TSDB in Prometheus's engine, same repetition, min / median / max.")
	if len(r.OtherCores) > 0 {
		fmt.Fprintf(w, "Other processes used %s cores (min / median / max over repetitions) meanwhile: figures from a busy machine are noisier.\n", spread(r.OtherCores))
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "panel (median of the repetitions)\tqueries\tgated ms\traw ms\tratio\t")
	for _, p := range r.PerPanel {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.2f\t\n", p.Title, p.Queries, p.Gated.Seconds()*1000, p.Raw.Seconds()*1000, p.Gated.Seconds()/p.Raw.Seconds())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Mismatches) == 0 {
		fmt.Fprintf(w, "Every published number (%d points; %d answers carried the privacy notice) equals the raw PromQL's.\n", r.Checked, r.Hidden)
		return nil
	}
	sort.Strings(r.Mismatches)
	shown := r.Mismatches[:min(len(r.Mismatches), 20)]
	fmt.Fprintf(w, "NOT EQUAL: %d of %d published points differ from the raw PromQL:\n  %s\n", len(r.Mismatches), r.Checked, strings.Join(shown, "\n  "))
	return nil
}
