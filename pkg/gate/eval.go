package gate

import (
	"math"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// point is one output value with its labels.
type point struct {
	lbls labels.Labels
	v    float64
}

// vec is the value of a plan node on one day: points by label key, or a
// scalar when the node holds no aggregate.
type vec struct {
	scalar   bool
	s        float64
	points   map[string]point
	complete bool // no point of an operand was suppressed
	// sets is the number of contributors of each point of a single
	// aggregate (absent when the point combines two); hidden holds the
	// points computed but suppressed, so that exports can say so.
	sets   map[string]int
	hidden map[string]labels.Labels
}

// same carries x's set sizes and hidden points to out, whose points are
// x's, one for one (negation, arithmetic with a literal).
func (out vec) same(x vec) vec {
	out.sets, out.hidden = x.sets, x.hidden
	return out
}

// dayEval evaluates a plan for one day and records what it hid.
type dayEval struct {
	g         *Gate
	reg       *registry.Registry
	audience  registry.Audience
	day       localday.Day
	snap      *snapshot
	daily     map[string]*denseDaily // by source index metric
	setSizes  []int
	minSet    int
	hidden    []string // rules of suppressed points
	dominance float64
	cache     *readCache // nil: none
	// pushed holds the engine's figures (Options.Pushdown) by leaf and
	// by position of the day among the evaluated ones; nil: computed here.
	pushed   map[*leaf][][]*pushedGroup
	dayIndex int
}

func (e *dayEval) eval(n node) vec {
	switch n := n.(type) {
	case *literal:
		return vec{scalar: true, s: n.v}
	case *negate:
		x := e.eval(n.x)
		if x.scalar {
			return vec{scalar: true, s: -x.s}
		}
		out := vec{points: map[string]point{}}
		for k, p := range x.points {
			out.points[k] = point{p.lbls, -p.v}
		}
		return out.same(x)
	case *binary:
		return e.binary(n)
	case *leaf:
		return e.leaf(n)
	}
	panic("gate: unknown plan node") // the planner only builds the types above
}

func arith(op parser.ItemType, a, b float64) float64 {
	switch op {
	case parser.ADD:
		return a + b
	case parser.SUB:
		return a - b
	case parser.MUL:
		return a * b
	case parser.DIV:
		return a / b
	}
	return math.NaN()
}

// binary applies arithmetic with Prometheus's one-to-one matching on
// identical label sets; the result keeps the left-hand labels.
func (e *dayEval) binary(n *binary) vec {
	l, r := e.eval(n.lhs), e.eval(n.rhs)
	switch {
	case l.scalar && r.scalar:
		return vec{scalar: true, s: arith(n.op, l.s, r.s)}
	case l.scalar:
		out := vec{points: map[string]point{}}
		for k, p := range r.points {
			out.points[k] = point{p.lbls, arith(n.op, l.s, p.v)}
		}
		return out.same(r)
	case r.scalar:
		out := vec{points: map[string]point{}}
		for k, p := range l.points {
			out.points[k] = point{p.lbls, arith(n.op, p.v, r.s)}
		}
		return out.same(l)
	}
	out := vec{points: map[string]point{}, hidden: map[string]labels.Labels{}}
	for k, p := range l.points {
		if q, ok := r.points[k]; ok {
			out.points[k] = point{p.lbls, arith(n.op, p.v, q.v)}
		} else if _, ok := r.hidden[k]; ok {
			out.hidden[k] = p.lbls
		}
	}
	// A point hidden on either side would have matched: it is hidden, not
	// absent, in the result.
	for k, lbls := range l.hidden {
		if _, ok := r.points[k]; ok {
			out.hidden[k] = lbls
		} else if _, ok := r.hidden[k]; ok {
			out.hidden[k] = lbls
		}
	}
	return out
}

// leaf computes one aggregate over the contributing RMPs of a perimeter on
// the day: the registry says who is a member, the data says who
// contributes, and each group is published only if it passes the set size,
// every Venn cell and, for sums, dominance.
func (e *dayEval) leaf(l *leaf) vec {
	out := vec{points: map[string]point{}, sets: map[string]int{}, hidden: map[string]labels.Labels{}}
	p, ok := e.reg.Perimeter(l.perimeter, e.day)
	if !ok {
		return out
	}
	groups := e.groups(p, l)
	fam := family{e.audience, l.metric.Flow, l.form}
	t := fam.threshold()
	cells := e.g.cells(e.reg, fam, e.day)
	for _, gr := range groups {
		k, n := gr.key, gr.size()
		e.setSizes = append(e.setSizes, n)
		if n < t {
			e.hidden = append(e.hidden, ruleSetSize)
			out.hidden[k] = gr.lbls
			continue
		}
		if gr.small(e, cells, t) {
			e.hidden = append(e.hidden, ruleCell)
			out.hidden[k] = gr.lbls
			continue
		}
		var v float64
		switch l.op {
		case parser.SUM:
			if e.dominance > 0 && gr.sum > 0 && gr.largest > e.dominance*gr.sum {
				e.hidden = append(e.hidden, ruleDominance)
				out.hidden[k] = gr.lbls
				continue
			}
			v = gr.sum
		case parser.QUANTILE:
			v = gr.quantile(l.q)
			if l.rule.RoundUpKWh {
				v = math.Ceil(v/1000) * 1000
			}
		}
		if e.minSet == 0 || n < e.minSet {
			e.minSet = n
		}
		out.points[k] = point{gr.lbls, v}
		out.sets[k] = n
	}
	return out
}

// groupOf returns the group labels of an RMP for a by clause, and their
// key, memoised in the read cache when there is one (an export asks the
// same grouping of the same meters for every day and form).
func (e *dayEval) groupOf(prm string, by []string) (labels.Labels, string) {
	var memo map[string]groupLabels
	if e.cache != nil {
		memo = e.cache.groups(by)
		e.cache.mu.Lock()
		g, ok := memo[prm]
		e.cache.mu.Unlock()
		if ok {
			return g.lbls, g.key
		}
	}
	m, _ := e.reg.Meter(prm)
	lbls, key := groupLabelsOf(m, by)
	g := groupLabels{lbls, key}
	if memo != nil {
		e.cache.mu.Lock()
		memo[prm] = g
		e.cache.mu.Unlock()
	}
	return g.lbls, g.key
}

// groupLabelsOf returns the group labels of meter m for a by clause, from
// the registry, and their key.
func groupLabelsOf(m *registry.Meter, by []string) (labels.Labels, string) {
	b := labels.NewScratchBuilder(len(by))
	for _, name := range by {
		if lv := meterLabel(m, name); lv != "" {
			b.Add(name, lv)
		}
	}
	b.Sort()
	lbls := b.Labels()
	return lbls, lbls.String()
}

// smallCell reports whether some Venn cell holds some but fewer than t of
// the contributing prms. RMPs outside every cell cannot occur for a visible
// perimeter; they are counted as one cell of their own, to fail closed.
func smallCell(c *cells, prms []string, t int) bool {
	count := map[int]int{}
	for _, prm := range prms {
		id, ok := c.of[prm]
		if !ok {
			id = -1
		}
		count[id]++
	}
	for _, n := range count {
		if n > 0 && n < t {
			return true
		}
	}
	return false
}

// quantile is the φ-quantile of values with Prometheus's semantics: linear
// interpolation between the closest ranks, rank φ·(n−1).
func quantile(q float64, values []float64) float64 {
	return quantileSorted(q, newOrderStats(slices.Clone(values)))
}

// quantileSorted is quantile of the values of s taken in increasing order,
// which s selects by rank rather than sorting them all.
func quantileSorted(q float64, s *orderStats) float64 {
	return s.quantile(q)
}

// quantileRanks returns the ranks whose values the φ-quantile of n > 0
// values interpolates, ⌊φ·(n−1)⌋ and the next (at most n−1), and the
// weight of the upper one: the arithmetic quantiles had when they indexed
// sorted values, kept to the bit (the push-down tests compare quartiles
// with the engines' byte for byte).
func quantileRanks(q float64, n int) (lo, hi int, w float64) {
	rank := q * float64(n-1)
	l := math.Floor(rank)
	h := math.Min(l+1, float64(n-1))
	return int(l), int(h), rank - l
}

// interpolate is the value at weight w from a to b.
func interpolate(a, b, w float64) float64 {
	return a*(1-w) + b*w
}

// sources lists the index registers a plan reads.
func sources(leaves []*leaf) []string {
	var out []string
	for _, l := range leaves {
		if l.metric.DerivedFrom != "" && !slices.Contains(out, l.metric.DerivedFrom) {
			out = append(out, l.metric.DerivedFrom)
		}
	}
	return out
}
