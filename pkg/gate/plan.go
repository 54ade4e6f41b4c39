package gate

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/policy"
	"github.com/metergate/metergate/pkg/registry"
)

// LabelPerimeter is the pseudo-label by which a query addresses a registered
// perimeter: sum(linky_consumption_daily_wh{perimeter="confluence"}). The
// gate resolves it to the registry's members; it never exists on series.
const LabelPerimeter = "perimeter"

// A plan is the allow-listed shape of a query: a small tree of aggregates
// over registered perimeters, literals and arithmetic. Anything the walker
// does not recognise is refused.
type node interface{ isNode() }

// leaf is one aggregate (or, with consent, one selector) over a perimeter.
type leaf struct {
	op        parser.ItemType // SUM, QUANTILE, or 0 for a bare selector (consent only)
	q         float64         // quantile
	metric    *catalogue.Metric
	perimeter string
	by        []string
	rmp       string // consent only: one RMP of the perimeter
	form      policy.Form
	rule      policy.Rule
}

type binary struct {
	op       parser.ItemType
	lhs, rhs node
}

type literal struct{ v float64 }

type negate struct{ x node }

func (*leaf) isNode()    {}
func (*binary) isNode()  {}
func (*literal) isNode() {}
func (*negate) isNode()  {}

// planner walks a parsed query for one caller.
type planner struct {
	reg        *registry.Registry
	caller     *config.Caller
	consented  bool // the caller's audience is consented
	leaves     []*leaf
	perimeters []string
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func (p *planner) plan(e parser.Expr) (node, error) {
	switch e := unparen(e).(type) {
	case *parser.NumberLiteral:
		return &literal{e.Val}, nil
	case *parser.UnaryExpr:
		x, err := p.plan(e.Expr)
		if err != nil {
			return nil, err
		}
		if e.Op == parser.SUB {
			return &negate{x}, nil
		}
		return x, nil
	case *parser.BinaryExpr:
		return p.binary(e)
	case *parser.AggregateExpr:
		return p.aggregate(e)
	case *parser.VectorSelector:
		if !p.consented {
			return nil, refuse(ruleForm, "a bare selector outputs one value per RMP")
		}
		l, err := p.selector(e)
		if err != nil {
			return nil, err
		}
		if l.metric.Nature == catalogue.Curve {
			l.form = policy.Curves
		} else {
			l.form = policy.Individual
		}
		return p.addLeaf(l)
	default:
		return nil, refuse(ruleForm, "%T is not an allowed form", e)
	}
}

func (p *planner) binary(e *parser.BinaryExpr) (node, error) {
	switch e.Op {
	case parser.ADD, parser.SUB, parser.MUL, parser.DIV:
	default:
		return nil, refuse(ruleForm, "operator %s is not allowed (only + - * / between aggregates and literals)", e.Op)
	}
	if e.ReturnBool {
		return nil, refuse(ruleForm, "bool modifier")
	}
	if vm := e.VectorMatching; vm != nil {
		if vm.On || len(vm.MatchingLabels) > 0 || vm.Card != parser.CardOneToOne || len(vm.Include) > 0 ||
			vm.FillValues.LHS != nil || vm.FillValues.RHS != nil {
			return nil, refuse(ruleForm, "vector matching modifiers are not allowed")
		}
	}
	lhs, err := p.plan(e.LHS)
	if err != nil {
		return nil, err
	}
	rhs, err := p.plan(e.RHS)
	if err != nil {
		return nil, err
	}
	return &binary{op: e.Op, lhs: lhs, rhs: rhs}, nil
}

func (p *planner) aggregate(e *parser.AggregateExpr) (node, error) {
	if e.Without {
		return nil, refuse(ruleForm, "without() keeps meter labels")
	}
	inner, ok := unparen(e.Expr).(*parser.VectorSelector)
	if !ok {
		return nil, refuse(ruleForm, "%s must aggregate one selector, not %T", e.Op, unparen(e.Expr))
	}
	l, err := p.selector(inner)
	if err != nil {
		return nil, err
	}
	l.op = e.Op
	l.by = slices.Clone(e.Grouping)
	switch e.Op {
	case parser.SUM:
		l.form = policy.Sum
	case parser.QUANTILE:
		lit, ok := unparen(e.Param).(*parser.NumberLiteral)
		if !ok || !slices.Contains(policy.Quartiles, lit.Val) {
			return nil, refuse(ruleForm, "only the quartiles 0.25, 0.5 and 0.75, as literals")
		}
		l.q = lit.Val
		l.form = policy.Quartile
	default:
		return nil, refuse(ruleForm, "aggregation %s is not allowed", e.Op)
	}
	if l.metric.Nature == catalogue.Curve {
		return nil, refuse(ruleCurve, "aggregates of load curves are not publishable")
	}
	for _, b := range l.by {
		if b == catalogue.LabelRMP || b == labels.MetricName {
			return nil, refuse(ruleForm, "grouping by %s", b)
		}
		if p.consented {
			continue
		}
		for _, v := range p.versions(l.perimeter) {
			if !slices.Contains(v.GroupBy, b) {
				return nil, refuse(ruleForm, "perimeter %s may not be grouped by %s", l.perimeter, b)
			}
		}
	}
	return p.addLeaf(l)
}

func (p *planner) addLeaf(l *leaf) (node, error) {
	if !l.rule.Allows(l.form) {
		return nil, refuse(ruleForm, "form %s of %s data is not publishable to the %s audience", l.form, l.metric.Flow, p.caller.Audience)
	}
	for _, v := range p.versions(l.perimeter) {
		if !v.Publishes(string(l.form)) {
			return nil, refuse(ruleForm, "perimeter %s does not publish the form %s", l.perimeter, l.form)
		}
	}
	p.leaves = append(p.leaves, l)
	if !slices.Contains(p.perimeters, l.perimeter) {
		p.perimeters = append(p.perimeters, l.perimeter)
	}
	return l, nil
}

// selector checks one vector selector: a catalogue metric, one registered
// perimeter visible to the caller, equality matchers only, no time
// modifiers.
func (p *planner) selector(vs *parser.VectorSelector) (*leaf, error) {
	if vs.OriginalOffset != 0 || vs.Offset != 0 || vs.OriginalOffsetExpr != nil || vs.Timestamp != nil ||
		vs.StartOrEnd != 0 || vs.Anchored || vs.Smoothed {
		return nil, refuse(ruleTime, "offset and @ modifiers address days other than the evaluated one")
	}
	l := &leaf{}
	var name string
	for _, m := range vs.LabelMatchers {
		if m.Type != labels.MatchEqual {
			return nil, refuse(ruleSelector, "matcher %s: only equality matchers", m)
		}
		switch {
		case m.Name == labels.MetricName && name == "":
			name = m.Value
		case m.Name == LabelPerimeter && l.perimeter == "":
			l.perimeter = m.Value
		case m.Name == catalogue.LabelRMP && p.consented && l.rmp == "":
			l.rmp = m.Value
		default:
			return nil, refuse(ruleSelector, "matcher %s is not allowed", m)
		}
	}
	m, rule, err := metricRule(name, p.caller.Audience)
	if err != nil {
		return nil, err
	}
	l.metric, l.rule = m, rule
	if l.perimeter == "" {
		return nil, refuse(rulePerimeter, "the selector addresses no registered perimeter")
	}
	versions := p.versions(l.perimeter)
	if len(versions) == 0 {
		return nil, refuse(rulePerimeter, "perimeter %q is not registered", l.perimeter)
	}
	for _, v := range versions {
		if v.Flow != string(m.Flow) {
			return nil, refuse(rulePerimeter, "perimeter %s is a %s perimeter, %s is %s", v.Name, v.Flow, name, m.Flow)
		}
		if !visible(v, p.caller) {
			return nil, refuse(ruleAudience, "perimeter %s (audience %s, %s) is not visible to %s", v.Name, v.Audience, v.UseCase, p.caller.Name)
		}
	}
	return l, nil
}

// metricRule returns the catalogue entry of a metric an audience may
// query and the policy row that governs it, or the refusal. The metadata
// endpoints list metrics through it, so that they never show one the
// planner would refuse.
func metricRule(name string, a registry.Audience) (*catalogue.Metric, policy.Rule, error) {
	m, ok := catalogue.Lookup(name)
	if !ok || m.Subject != catalogue.Meter {
		return nil, policy.Rule{}, refuse(ruleMetric, "metric %q is not a publishable meter metric", name)
	}
	if m.Nature == catalogue.Daily && m.DerivedFrom == "" {
		return nil, policy.Rule{}, refuse(ruleMetric, "daily data is published as daily energy (the *_daily_wh metrics), not as %s", name)
	}
	rule, ok := policy.Lookup(m.Flow, m.Nature, a)
	if !ok || len(rule.Forms) == 0 {
		return nil, policy.Rule{}, refuse(ruleCurve, "%s %s data is not publishable to the %s audience", m.Flow, m.Nature, a)
	}
	return m, rule, nil
}

func (p *planner) versions(name string) []*registry.Perimeter {
	var out []*registry.Perimeter
	for i := range p.reg.Perimeters {
		if p.reg.Perimeters[i].Name == name {
			out = append(out, &p.reg.Perimeters[i])
		}
	}
	return out
}

// MayAddress reports whether caller c may address perimeter version v; the
// export and the listings use it so that they offer what the gate allows.
func MayAddress(v *registry.Perimeter, c *config.Caller) bool { return visible(v, c) }

// visible reports whether caller c may address perimeter version v.
func visible(v *registry.Perimeter, c *config.Caller) bool {
	switch c.Audience {
	case registry.Public:
		return v.Audience == registry.Public
	case registry.Restricted:
		return v.Audience == registry.Public ||
			v.Audience == registry.Restricted && (len(c.UseCases) == 0 || slices.Contains(c.UseCases, v.UseCase))
	case registry.Consented:
		return v.Audience == registry.Consented && slices.Contains(c.UseCases, v.UseCase)
	}
	return false
}

// nature is the single nature of a plan's leaves; mixing daily and curve
// data in one query is refused.
func (p *planner) nature() (catalogue.Nature, error) {
	var n catalogue.Nature
	for _, l := range p.leaves {
		if n != "" && l.metric.Nature != n {
			return "", refuse(ruleForm, "daily and curve data in one query")
		}
		n = l.metric.Nature
	}
	if n == "" {
		return "", refuse(rulePerimeter, "the query addresses no perimeter")
	}
	return n, nil
}
