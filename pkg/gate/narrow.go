package gate

import (
	"context"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/registry"
)

// An aggregate over a perimeter only uses the index registers of the
// perimeter's members, but a select by metric name alone decodes every
// meter's series in every block of the range: a cluster's quartile over a
// year read the 7,692 meters of the district to use about 256, and a
// dashboard refresh asks that of each of the 30 clusters three times
// (docs/performance.md, "Dashboards"). So that the storage decodes only
// the series that can matter, an aggregate that does not share its reads
// (no read cache) narrows them to the RMPs its perimeters can contain,
// with an rmp matcher the storage answers from its postings index.
//
// The narrowing is a superset of the members on every day: every meter a
// version of a perimeter of the plan selects, in service or not (Members
// is that set filtered by day). Reading more series than the members
// changes no figure: the gate picks the members' values out of what it
// read, as before. The matcher is on the RMP, so all series of an RMP are
// read or none, and series disagreeing about a reading are still seen.

// narrowKey carries the rmp matcher in the context of an aggregate's reads.
type narrowKey struct{}

// narrowReads returns ctx under which readIndex selects only the series of
// the RMPs the named perimeters can contain. ctx is returned as is under a
// read cache (its reads serve every perimeter of an export) and when the
// perimeters cover most of the district, where a set of thousands of RMPs
// costs the postings lookup more than the select by name it would narrow.
func narrowReads(ctx context.Context, reg *registry.Registry, perimeters []string) context.Context {
	if cacheOf(ctx, reg) != nil {
		return ctx
	}
	var versions []*registry.Perimeter
	for i := range reg.Perimeters {
		if slices.Contains(perimeters, reg.Perimeters[i].Name) {
			versions = append(versions, &reg.Perimeters[i])
		}
	}
	var prms []string
	for i := range reg.Meters {
		m := &reg.Meters[i]
		for _, p := range versions {
			if p.Select.Match(m) {
				prms = append(prms, regexp.QuoteMeta(m.PRM))
				break
			}
		}
	}
	if len(prms) == 0 || 2*len(prms) > len(reg.Meters) {
		return ctx
	}
	m, err := labels.NewMatcher(labels.MatchRegexp, catalogue.LabelRMP, strings.Join(prms, "|"))
	if err != nil {
		return ctx // quoted literals always compile; reading everything would still be right
	}
	return context.WithValue(ctx, narrowKey{}, m)
}

// readMatchers are the matchers of readIndex's select of source: the
// metric name, and the narrowing of ctx if any.
func readMatchers(ctx context.Context, source string) []*labels.Matcher {
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, source)}
	if m, ok := ctx.Value(narrowKey{}).(*labels.Matcher); ok {
		ms = append(ms, m)
	}
	return ms
}
