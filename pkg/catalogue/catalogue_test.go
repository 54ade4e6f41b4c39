package catalogue

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ls      labels.Labels
		wantErr string
	}{
		{"daily index", labels.FromStrings("__name__", IndexConsumption, "rmp", "09111642617347", "cluster", "k01", "usage", "residential"), ""},
		{"leading zeros kept", labels.FromStrings("__name__", IndexConsumption, "rmp", "00000000000001"), ""},
		{"concentrator", labels.FromStrings("__name__", ConcInfo, "concentrator", "c07", "plc", "G3"), ""},
		{"EV curve", labels.FromStrings("__name__", CurveEVCharge, "rmp", "12345678901234", "station", "bluely-1", "operator", "bluely"), ""},
		{"unknown metric", labels.FromStrings("__name__", "up"), `metric "up" is not in the catalogue`},
		{"no name", labels.FromStrings("rmp", "12345678901234"), "has no metric name"},
		{"missing rmp", labels.FromStrings("__name__", IndexConsumption, "cluster", "k01"), "needs the labels rmp"},
		{"13-digit rmp", labels.FromStrings("__name__", IndexConsumption, "rmp", "1234567890123"), "does not match"},
		{"extra label", labels.FromStrings("__name__", IndexConsumption, "rmp", "12345678901234", "instance", "x"), `label "instance" is not allowed`},
		{"bad usage", labels.FromStrings("__name__", IndexConsumption, "rmp", "12345678901234", "usage", "industrial"), "does not match"},
		{"bad plc", labels.FromStrings("__name__", ConcInfo, "concentrator", "c07", "plc", "G2"), "does not match"},
		{"derived metric refused", labels.FromStrings("__name__", DailyConsumption, "rmp", "12345678901234"), "cannot be written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Validate(tc.ls)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// docs/catalogue.md carries the catalogue's table between two markers;
// this test fails when the code changed and the documentation did not.
func TestDocumentationIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../docs/catalogue.md")
	require.NoError(t, err)
	doc := string(b)
	const begin, end = "<!-- catalogue:begin -->\n", "<!-- catalogue:end -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	require.True(t, i >= 0 && j > i, "docs/catalogue.md lacks the catalogue markers")
	require.Equal(t, Markdown(), doc[i+len(begin):j], "docs/catalogue.md is stale: paste catalogue.Markdown() between the markers")
}

func TestNamesFollowPrometheusConventions(t *testing.T) {
	for _, m := range All {
		if m.Unit != "" {
			require.True(t, strings.HasSuffix(m.Name, "_"+strings.ToLower(m.Unit)) || strings.HasSuffix(m.Name, "_"+strings.ToLower(m.Unit)+"_total"), "%s: unit %s not in the name", m.Name, m.Unit)
		}
		if m.Type == "counter" && m.Unit == "" {
			require.True(t, strings.HasSuffix(m.Name, "_total"), "%s: a counter without unit ends in _total", m.Name)
		}
	}
}
