package gate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/audit"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/gate/gatetest"
	"github.com/metergate/metergate/pkg/registry"
)

// auditLines reads an audit log as records without their time and chain,
// so that two logs of the same decisions compare equal.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		var r map[string]any
		require.NoError(t, json.Unmarshal(line, &r))
		delete(r, "time")
		delete(r, "prev")
		out = append(out, r)
	}
	return out
}

// The gate table's queries, asked as ranges over every day of the test
// district by each caller, give the same answers, points and audit records
// through ExecBatch under a read cache (the export's path: shared reads,
// groups shared between the aggregations of a perimeter, one sync) as
// through Exec one by one without a cache.
func TestExecBatchIsExecOneByOne(t *testing.T) {
	d := gatetest.Build(t)
	start, end := gatetest.Windows[0][0].End(), gatetest.Windows[1][1].End()
	type who struct {
		a   registry.Audience
		ucs string
	}
	callers := map[who]*config.Caller{}
	reqs := map[who][]gate.Request{}
	var order []who
	for _, c := range gatetest.Cases {
		if c.Refused || c.Audience == registry.Consented {
			continue
		}
		k := who{c.Audience, joinUCs(c.UseCases)}
		if callers[k] == nil {
			callers[k] = caller(c.Audience, c.UseCases)
			order = append(order, k)
		}
		reqs[k] = append(reqs[k],
			gate.Request{Query: c.Query, Start: start, End: end, Step: 24 * time.Hour},
			gate.Request{Query: c.Query, Start: c.Day.End(), End: c.Day.End()})
	}
	require.GreaterOrEqual(t, len(order), 2, "public and restricted callers")
	one, onePath := newGate(t, d, d.Now)
	batch, batchPath := newGate(t, d, d.Now)
	points := 0
	for _, k := range order {
		c := callers[k]
		got, err := batch.ExecBatch(gate.WithReadCache(context.Background()), c, reqs[k])
		require.NoError(t, err)
		require.Len(t, got, len(reqs[k]))
		for i, req := range reqs[k] {
			want, err := one.Exec(context.Background(), c, req)
			require.NoError(t, err)
			require.Equal(t, want.Value.String(), got[i].Value.String(), req.Query)
			require.Equal(t, want.Points, got[i].Points, req.Query)
			require.Equal(t, want.Suppressed, got[i].Suppressed, req.Query)
			points += len(want.Points)
		}
	}
	require.Greater(t, points, 100, "the comparison covers many points")
	require.Equal(t, auditLines(t, onePath), auditLines(t, batchPath))
}

// A refusal stops a batch: the answers before it are returned, and the
// records of those and of the refusal are durable; nothing after it is
// evaluated or recorded.
func TestExecBatchStopsAtRefusal(t *testing.T) {
	d := gatetest.Build(t)
	g, path := newGate(t, d, d.Now)
	day := gatetest.Day("2024-03-28").End()
	ok := gate.Request{Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})`, Start: day, End: day}
	bad := gate.Request{Query: `max(linky_consumption_daily_wh{perimeter="confluence"})`, Start: day, End: day}
	res, err := g.ExecBatch(gate.WithReadCache(context.Background()), caller(registry.Public, nil), []gate.Request{ok, bad, ok})
	require.ErrorIs(t, err, gate.ErrRefused)
	require.Len(t, res, 1)
	require.Len(t, asMap(t, res[0].Value), 1)
	lines := auditLines(t, path)
	require.Len(t, lines, 2)
	require.Equal(t, audit.Allowed, lines[0]["decision"])
	require.Equal(t, audit.Refused, lines[1]["decision"])
	n, err := audit.Verify(path)
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// A batch whose records cannot be written releases nothing.
func TestExecBatchNoRecordNoAnswer(t *testing.T) {
	d := gatetest.Build(t)
	path := t.TempDir() + "/audit.log"
	log, err := audit.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, log.Close()) // every write now fails
	g, err := gate.New(gate.Options{Registry: func() *registry.Registry { return d.Registry }, Queryable: d.DB, Audit: log, Now: func() time.Time { return d.Now }})
	require.NoError(t, err)
	day := gatetest.Day("2024-03-28").End()
	q := gate.Request{Query: `sum(linky_consumption_daily_wh{perimeter="confluence"})`, Start: day, End: day}
	res, err := g.ExecBatch(context.Background(), caller(registry.Public, nil), []gate.Request{q, q})
	require.ErrorIs(t, err, gate.ErrUnavailable)
	require.Empty(t, res)
}

func joinUCs(ucs []registry.UseCase) string {
	s := ""
	for _, uc := range ucs {
		s += string(uc) + ","
	}
	return s
}
