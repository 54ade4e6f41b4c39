// Package dashboards builds metergate's Grafana dashboards as code with the
// Grafana Foundation SDK. The JSON files next to this package are its
// output, committed so that Grafana can provision them; `go generate
// ./dashboards` rewrites them and TestGeneratedJSONIsCurrent fails when
// they are stale.
//
// Every panel reads through the metergate data source plugin chosen by the
// dashboard's `datasource` variable, so every figure passes the privacy
// gate with the audience of that data source's token: a dashboard is
// meant for one audience (Spec.Audience).
package dashboards

//go:generate go run ./gen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// PluginID is the metergate data source plugin's id (src/plugin.json);
// the tests check it against backend/plugin.ID.
const PluginID = "metergate-metergate-datasource"

// Query types of the plugin (DataQuery.queryType).
const (
	UC1    = "uc1"
	UC2    = "uc2"
	UC3    = "uc3"
	UC4    = "uc4"
	UC5    = "uc5"
	PromQL = "promql"
)

// Query is one target of a panel, in the plugin's query model
// (backend/plugin.QueryModel plus Grafana's common fields).
type Query struct {
	RefID      string                `json:"refId"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	QueryType  string                `json:"queryType"`
	Metric     string                `json:"metric,omitempty"`
	Perimeter  string                `json:"perimeter,omitempty"`
	Step       string                `json:"step,omitempty"`
	RMP        string                `json:"rmp,omitempty"`
	Expr       string                `json:"expr,omitempty"`
	Instant    bool                  `json:"instant,omitempty"`
}

var _ variants.Dataquery = Query{}

// ImplementsDataqueryVariant marks Query as a data query for the SDK.
func (Query) ImplementsDataqueryVariant() {}

// DataqueryType is the plugin's id.
func (Query) DataqueryType() string { return PluginID }

// Validate refuses a query the plugin could not run.
func (q Query) Validate() error {
	switch {
	case q.QueryType == PromQL && q.Expr == "":
		return fmt.Errorf("query %s: a promql query needs expr", q.RefID)
	case q.QueryType != PromQL && q.Metric == "":
		return fmt.Errorf("query %s: a use-case query needs a metric", q.RefID)
	}
	return nil
}

// Equals compares two queries.
func (q Query) Equals(other variants.Dataquery) bool {
	o, ok := other.(Query)
	return ok && o == q
}

// Build lets a Query be given where the SDK takes a query builder.
func (q Query) Build() (variants.Dataquery, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return q, nil
}

// ds is the data source reference of every panel and query: the
// dashboard's datasource variable.
func ds() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(PluginID), Uid: cog.ToPtr("${datasource}")}
}

func useCase(ref, uc, metric, perimeter string) cog.Builder[variants.Dataquery] {
	d := ds()
	return Query{RefID: ref, Datasource: &d, QueryType: uc, Metric: metric, Perimeter: perimeter}
}

func promql(ref, expr, step string) cog.Builder[variants.Dataquery] {
	d := ds()
	return Query{RefID: ref, Datasource: &d, QueryType: PromQL, Expr: expr, Step: step}
}

// Spec is one generated dashboard.
type Spec struct {
	File     string // JSON file name in this directory
	Audience string // the audience of the token its data source needs
	UseCases []string
	Build    func() (dashboard.Dashboard, error)
}

// All lists the dashboards.
func All() []Spec {
	return []Spec{
		{File: "confluence-one-planet.json", Audience: "public", UseCases: []string{UC4}, Build: onePlanet},
		{File: "buildings.json", Audience: "restricted", UseCases: []string{UC1, UC2}, Build: buildings},
		{File: "buildings-households.json", Audience: "consented", UseCases: []string{UC2, UC3}, Build: households},
		{File: "electric-mobility.json", Audience: "consented", UseCases: []string{UC5}, Build: mobility},
		{File: "rollout-data-quality.json", Audience: "operator", Build: operations},
	}
}

// Marshal renders a dashboard as the committed JSON.
func Marshal(s Spec) ([]byte, error) {
	d, err := s.Build()
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", s.File, err)
	}
	// Stable, unique panel ids: Grafana's links and the linter rely on them.
	for i := range d.Panels {
		id := uint32(i + 1)
		switch p := d.Panels[i]; {
		case p.Panel != nil:
			p.Panel.Id = &id
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", s.File, err)
	}
	return append(b, '\n'), nil
}

// Write writes every dashboard's JSON into dir.
func Write(dir string) error {
	for _, s := range All() {
		b, err := Marshal(s)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, s.File), b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", s.File, err)
		}
	}
	return nil
}

// datasourceVariable is the one data source variable of every dashboard.
func datasourceVariable(audience string) cog.Builder[dashboard.VariableModel] {
	return dashboard.NewDatasourceVariableBuilder("datasource").
		Label("metergate").
		Description("A metergate data source whose token has the " + audience + " audience: the privacy gate answers with that audience's rights.").
		Type(PluginID)
}

func custom(name, label, description string, values []string, multi bool) cog.Builder[dashboard.VariableModel] {
	all := ""
	for i, v := range values {
		if i > 0 {
			all += ","
		}
		all += v
	}
	first := values[0]
	return dashboard.NewCustomVariableBuilder(name).
		Label(label).
		Description(description).
		Values(dashboard.StringOrMap{String: cog.ToPtr(all)}).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr(first)},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(first)},
		}).
		Multi(multi).
		IncludeAll(multi)
}

func thresholds(steps ...float64) cog.Builder[dashboard.ThresholdsConfig] {
	ts := []dashboard.Threshold{{Value: nil, Color: "green"}}
	colors := []string{"red", "orange", "purple"}
	for i, v := range steps {
		ts = append(ts, dashboard.Threshold{Value: cog.ToPtr(v), Color: colors[i%len(colors)]})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

func thresholdLine() cog.Builder[common.GraphThresholdsStyleConfig] {
	return common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)
}

func row(title string) cog.Builder[dashboard.RowPanel] {
	return dashboard.NewRowBuilder(title)
}

func base(uid, title, description string, tags ...string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags(append([]string{"metergate"}, tags...)).
		Timezone("Europe/Paris").
		Time("now-30d", "now").
		Refresh("1h").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Editable()
}
