package dashboards_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/backend/plugin"
	"github.com/metergate/metergate/dashboards"
)

// TestGeneratedJSONIsCurrent fails when the committed JSON differs from
// what the Go sources build: run `go generate ./dashboards`.
func TestGeneratedJSONIsCurrent(t *testing.T) {
	for _, s := range dashboards.All() {
		want, err := dashboards.Marshal(s)
		require.NoError(t, err)
		got, err := os.ReadFile(s.File)
		require.NoError(t, err, "run go generate ./dashboards")
		require.True(t, bytes.Equal(want, got), "%s is stale: run go generate ./dashboards", s.File)
	}
}

func TestPluginID(t *testing.T) {
	require.Equal(t, plugin.ID, dashboards.PluginID)
}

// Parsed dashboard JSON, as Grafana reads it.
type jsonDashboard struct {
	UID         string `json:"uid"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Templating  struct {
		List []jsonVariable `json:"list"`
	} `json:"templating"`
	Panels []jsonPanel `json:"panels"`
}

type jsonVariable struct {
	Type       string                 `json:"type"`
	Name       string                 `json:"name"`
	Query      any                    `json:"query"`
	Regex      string                 `json:"regex"`
	Multi      bool                   `json:"multi"`
	Datasource map[string]interface{} `json:"datasource"`
}

type jsonRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type jsonPanel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description"`
	Datasource  *jsonRef     `json:"datasource"`
	Targets     []jsonTarget `json:"targets"`
	Repeat      string       `json:"repeat"`
	TimeShift   string       `json:"timeShift"`
	GridPos     struct{ X, Y, W, H int }
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Panels []jsonPanel `json:"panels"`
}

type jsonTarget struct {
	RefID      string   `json:"refId"`
	Datasource *jsonRef `json:"datasource"`
	QueryType  string   `json:"queryType"`
	Raw        json.RawMessage
}

func (p *jsonPanel) UnmarshalJSON(b []byte) error {
	type plain jsonPanel
	var v struct {
		plain
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = jsonPanel(v.plain)
	p.GridPos = v.GridPos
	return nil
}

func (t *jsonTarget) UnmarshalJSON(b []byte) error {
	type plain jsonTarget
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = jsonTarget(v)
	t.Raw = append(json.RawMessage(nil), b...)
	return nil
}

func load(t *testing.T, file string) jsonDashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Clean(file))
	require.NoError(t, err)
	var d jsonDashboard
	require.NoError(t, json.Unmarshal(b, &d), file)
	return d
}

// flatPanels lists every panel, those inside rows included, without rows.
func flatPanels(ps []jsonPanel) []jsonPanel {
	var out []jsonPanel
	for _, p := range ps {
		if p.Type == "row" {
			out = append(out, flatPanels(p.Panels)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// TestLint applies the rules of Grafana's dashboard linter that matter
// here: one datasource variable of the plugin's type, every panel and
// target on it, units, titles and descriptions set, unique ids, no panel
// overlapping another.
func TestLint(t *testing.T) {
	for _, s := range dashboards.All() {
		t.Run(s.File, func(t *testing.T) {
			lint(t, load(t, s.File))
		})
	}
}

func lint(t *testing.T, d jsonDashboard) {
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Title)
	require.NotEmpty(t, d.Description)
	var dsVars []jsonVariable
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			dsVars = append(dsVars, v)
		}
	}
	require.Len(t, dsVars, 1, "exactly one datasource variable")
	require.Equal(t, "datasource", dsVars[0].Name)
	require.Equal(t, dashboards.PluginID, dsVars[0].Query, "the datasource variable's type is the plugin")
	require.False(t, dsVars[0].Multi)

	ids := map[int]string{}
	var all []jsonPanel
	for _, p := range d.Panels {
		all = append(all, p)
		if p.Type == "row" {
			all = append(all, p.Panels...)
		}
	}
	for _, p := range all {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		require.NotEmpty(t, p.Title, "panel %d has no title", p.ID)
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Description, "panel %q has no description", p.Title)
		require.NotEmpty(t, p.FieldConfig.Defaults.Unit, "panel %q has no unit", p.Title)
		require.NotNil(t, p.Datasource, "panel %q has no datasource", p.Title)
		require.Equal(t, jsonRef{Type: dashboards.PluginID, UID: "${datasource}"}, *p.Datasource, "panel %q", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		refs := map[string]bool{}
		for _, q := range p.Targets {
			require.NotNil(t, q.Datasource, "panel %q query %s", p.Title, q.RefID)
			require.Equal(t, *p.Datasource, *q.Datasource, "panel %q query %s", p.Title, q.RefID)
			require.False(t, refs[q.RefID], "panel %q: refId %s twice", p.Title, q.RefID)
			refs[q.RefID] = true
			require.Contains(t, []string{"uc1", "uc2", "uc3", "uc4", "uc5", "promql"}, q.QueryType)
		}
		require.True(t, p.GridPos.W > 0 && p.GridPos.H > 0 && p.GridPos.X+p.GridPos.W <= 24,
			"panel %q is off the grid: %+v", p.Title, p.GridPos)
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, ga, b.Title, gb)
			}
		}
	}
}

// TestLintCatchesOverlap makes sure the lint can fail.
func TestLintCatchesOverlap(t *testing.T) {
	d := load(t, dashboards.All()[0].File)
	d.Panels[2].GridPos = d.Panels[1].GridPos
	ft := &testing.T{}
	done := make(chan struct{})
	go func() { defer close(done); lint(ft, d) }()
	<-done
	require.True(t, ft.Failed(), "overlapping panels pass the lint")
	require.True(t, strings.HasPrefix(dashboards.All()[0].File, "confluence"))
}
