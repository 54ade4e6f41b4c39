package catalogue

import (
	"fmt"
	"strings"
)

// Markdown renders the catalogue as the table of docs/catalogue.md, so the
// documentation is the code's own words (a test keeps them equal).
func Markdown() string {
	var b strings.Builder
	b.WriteString("| metric | type | unit | subject | flow | nature | required labels | optional labels | stamped at | meaning |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range All {
		unit := m.Unit
		if unit == "" {
			unit = "—"
		}
		flow := string(m.Flow)
		if flow == "" {
			flow = "—"
		}
		help := m.Help
		if m.DerivedFrom != "" {
			help += fmt.Sprintf(" Derived by the gate from `%s`; refused at ingestion.", m.DerivedFrom)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			m.Name, m.Type, unit, m.Subject, flow, m.Nature, codeList(m.Required), codeList(m.Optional), m.Stamp, help)
	}
	return b.String()
}

func codeList(ls []string) string {
	if len(ls) == 0 {
		return "—"
	}
	return "`" + strings.Join(ls, "`, `") + "`"
}
