package gate

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrRefused is the one answer to every refused query. Its message never
// varies: the reason and any set size go to the audit log only, so that a
// refusal cannot be used to measure a set.
var ErrRefused = errors.New("query refused by the privacy policy")

// ErrUnavailable is returned when the gate could not evaluate an allowed
// query (storage or audit failure). Nothing is returned with it.
var ErrUnavailable = errors.New("query could not be evaluated")

// ErrSuppressed is the notice added to a result's annotations when points
// were computed but hidden. It is constant: it says that something was
// hidden, which the absence of points says anyway, never how many meters.
var ErrSuppressed = errors.New("hidden to protect privacy: fewer than the required meters")

// Rules named in the audit log.
const (
	ruleParse     = "parse"
	ruleCaller    = "caller"
	ruleForm      = "form"
	ruleSelector  = "selector"
	ruleMetric    = "metric"
	ruleCurve     = "curve-needs-consent"
	rulePerimeter = "perimeter"
	ruleAudience  = "audience"
	ruleTime      = "time-modifier"
	ruleD2        = "d+2"
	ruleDuplicate = "duplicate-query"
	ruleSetSize   = "set-size"
	ruleCell      = "venn-cell"
	ruleDominance = "dominance"
	ruleConsent   = "consent"
)

// refusal is the internal reason of a refusal, for the audit log.
type refusal struct{ rule, detail string }

func (r *refusal) Error() string { return r.rule + ": " + r.detail }

func refuse(rule, format string, args ...any) error {
	return &refusal{rule: rule, detail: fmt.Sprintf(format, args...)}
}

// SingleParam returns the one value of a request parameter, looking at the
// URL and at a form body together. A parameter given twice (in the URL and
// the body, or repeated) is refused: two layers reading different copies is
// how filters get bypassed. It parses the form if needed.
func SingleParam(r *http.Request, name string) (string, error) {
	if err := r.ParseForm(); err != nil {
		return "", ErrRefused
	}
	// r.Form merges the URL and the body, so a value in both counts twice.
	vs := r.Form[name]
	if len(vs) != 1 {
		return "", ErrRefused
	}
	return vs[0], nil
}
