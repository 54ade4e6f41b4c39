package gate

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// readCache lets a caller that runs many queries over the same days (an
// export: every perimeter and every form, slice after slice) read the raw
// index registers and work out registry membership once, instead of once
// per query. It only memoises what the gate would compute again from the
// same inputs: every query is still planned, checked, counted, thresholded
// and audited on its own. Consent is not cached: it is judged at each
// query, so that a revocation stops an export in progress.
type readCache struct {
	mu      sync.Mutex
	reg     *registry.Registry     // the snapshot the entries were computed from
	daily   map[string]cachedDaily // by index register: the last days read
	dense   map[string]cachedDense // the same, by meter position (the aggregate path)
	members map[string][]string
	grouped map[string]map[string]groupLabels // by clause → RMP → its group
	// evaluated holds the groups of contributing RMPs of a perimeter on a
	// day (dayEval.groups), shared by the aggregations of that perimeter.
	evaluated map[groupsKey][]*evalGroup
	same      map[sameKey][]*evalGroup // groups by their RMPs (sameGroup)
}

type groupLabels struct {
	lbls labels.Labels
	key  string
}

// groups returns the memo of one by clause; read and write it under c.mu.
func (c *readCache) groups(by []string) map[string]groupLabels {
	k := strings.Join(by, "\xff")
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.grouped[k]
	if m == nil {
		m = map[string]groupLabels{}
		c.grouped[k] = m
	}
	return m
}

type cachedDaily struct {
	key string
	v   dailyValues
}

type cachedDense struct {
	key string
	v   *denseDaily
}

type readCacheKey struct{}

// WithReadCache returns a context under which Exec reuses raw daily
// readings and perimeter membership across calls. Drop the
// context to drop the cache; a registry reload invalidates it.
func WithReadCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, readCacheKey{}, &readCache{})
}

func cacheOf(ctx context.Context, reg *registry.Registry) *readCache {
	c, _ := ctx.Value(readCacheKey{}).(*readCache)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg != reg {
		c.reg = reg
		c.daily, c.members, c.grouped = map[string]cachedDaily{}, map[string][]string{}, map[string]map[string]groupLabels{}
		c.evaluated, c.dense, c.same = map[groupsKey][]*evalGroup{}, map[string]cachedDense{}, map[sameKey][]*evalGroup{}
	}
	return c
}

func daysKey(src string, days []localday.Day) string {
	if len(days) == 0 {
		return src
	}
	return fmt.Sprintf("%s|%s|%s|%d", src, days[0], days[len(days)-1], len(days))
}

// readDailyCached is readDaily through the cache, when there is one.
func (g *Gate) readDailyCached(ctx context.Context, reg *registry.Registry, src string, days []localday.Day) (dailyValues, error) {
	c := cacheOf(ctx, reg)
	if c == nil {
		return readDaily(ctx, g.o.Queryable, g.sealed, src, days, g.o.LookbackDelta)
	}
	k := daysKey(src, days)
	c.mu.Lock()
	e, ok := c.daily[src]
	c.mu.Unlock()
	if ok && e.key == k {
		return e.v, nil
	}
	v, err := readDaily(ctx, g.o.Queryable, g.sealed, src, days, g.o.LookbackDelta)
	if err != nil {
		return nil, err
	}
	// One entry per register: a caller moving slice by slice keeps one
	// slice in memory, whatever the range.
	c.mu.Lock()
	c.daily[src] = cachedDaily{key: k, v: v}
	c.mu.Unlock()
	return v, nil
}

// readDenseCached reads daily energies by meter position, through the
// cache when there is one (one entry per register, as readDailyCached).
func (g *Gate) readDenseCached(ctx context.Context, s *snapshot, src string, days []localday.Day) (*denseDaily, error) {
	c := cacheOf(ctx, s.reg)
	k := daysKey(src, days)
	if c != nil {
		c.mu.Lock()
		e, ok := c.dense[src]
		c.mu.Unlock()
		if ok && e.key == k {
			return e.v, nil
		}
	}
	r, err := readIndex(ctx, g.o.Queryable, g.sealed, src, days, g.o.LookbackDelta)
	if err != nil {
		return nil, err
	}
	v := s.dense(r, days)
	if c != nil {
		c.mu.Lock()
		c.dense[src] = cachedDense{key: k, v: v}
		c.mu.Unlock()
	}
	return v, nil
}

// members is reg.Members through the cache.
func members(c *readCache, reg *registry.Registry, p *registry.Perimeter, d localday.Day) []string {
	if c == nil {
		return reg.Members(p, d)
	}
	k := fmt.Sprintf("%p|%s", p, d)
	c.mu.Lock()
	m, ok := c.members[k]
	c.mu.Unlock()
	if !ok {
		m = reg.Members(p, d)
		c.mu.Lock()
		c.members[k] = m
		c.mu.Unlock()
	}
	return m
}
