package export

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/pkg/localday"
	"github.com/metergate/metergate/pkg/registry"
)

// batchGate answers every batch with empty results after a delay of its
// own per slice, and records how many batches ran at once. fail, when set,
// says which slice (by its first day) fails, and cancel is called during
// the batch of that day instead when set.
type batchGate struct {
	mu       sync.Mutex
	running  int
	most     int
	started  []localday.Day
	delay    func(localday.Day) time.Duration
	fail     localday.Day
	cancelAt localday.Day
	cancel   context.CancelFunc
}

func (g *batchGate) Exec(context.Context, *config.Caller, gate.Request) (*gate.Result, error) {
	panic("the export asks a batching gate in batches")
}

func (g *batchGate) Now() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, localday.Paris) }

func (g *batchGate) ExecBatch(ctx context.Context, _ *config.Caller, reqs []gate.Request) ([]*gate.Result, error) {
	day := localday.Of(reqs[0].Start).AddDays(-1) // a daily request starts at the end of its first day
	g.mu.Lock()
	g.running++
	g.most = max(g.most, g.running)
	g.started = append(g.started, day)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	if g.delay != nil {
		time.Sleep(g.delay(day))
	}
	if day == g.cancelAt && g.cancel != nil {
		g.cancel()
		return nil, ctx.Err()
	}
	if day == g.fail {
		return nil, errors.New("audit log write failed")
	}
	out := make([]*gate.Result, len(reqs))
	for i := range out {
		out[i] = &gate.Result{Value: promql.Matrix{}}
	}
	return out, nil
}

func pipelineExport(t *testing.T, g *batchGate, ctx context.Context, from, to localday.Day) (string, int, error) {
	t.Helper()
	reg, err := registry.New(&registry.Registry{Perimeters: []registry.Perimeter{{Name: "all", UseCase: registry.UC4,
		Audience: registry.Public, Flow: "consumption", Select: registry.Selector{All: true}}}})
	require.NoError(t, err)
	e := &Exporter{Gate: g, Registry: func() *registry.Registry { return reg }}
	c := &config.Caller{Name: "p", Audience: registry.Public}
	s, err := e.Check(c, Spec{UseCase: registry.UC4, Nature: catalogue.Daily, From: from, To: to})
	require.NoError(t, err)
	var out bytes.Buffer
	n, err := e.Write(ctx, &out, c, s, Format{})
	return out.String(), n, err
}

// Two slices are evaluated at once, never more, and rows leave in order of
// days even when a later slice is answered first.
func TestSlicesInFlightKeepTheirOrder(t *testing.T) {
	first := localday.Day{Year: 2025, Month: time.January, Day: 1}
	g := &batchGate{delay: func(d localday.Day) time.Duration {
		if d == first {
			return 100 * time.Millisecond // the second slice finishes first
		}
		return 10 * time.Millisecond
	}}
	body, n, err := pipelineExport(t, g, context.Background(), first, first.AddDays(5*dailySlice-1))
	require.NoError(t, err)
	require.Equal(t, 5*dailySlice, n, "a row of the whole perimeter every day")
	require.Equal(t, 2, g.most)
	lines := strings.Split(strings.TrimSpace(body), "\r\n")[1:]
	require.Len(t, lines, n)
	for i, line := range lines {
		require.True(t, strings.HasPrefix(strings.Split(line, ";")[1], first.AddDays(i).String()), "row %d: %s", i, line)
	}
}

// A slice the gate cannot answer (its audit records failed) ends the
// export: none of its rows, nor of any later slice, is written.
func TestFailedSliceReleasesNothingAfter(t *testing.T) {
	first := localday.Day{Year: 2025, Month: time.January, Day: 1}
	g := &batchGate{fail: first.AddDays(dailySlice)}
	body, n, err := pipelineExport(t, g, context.Background(), first, first.AddDays(4*dailySlice-1))
	require.ErrorContains(t, err, "audit log write failed")
	require.Equal(t, dailySlice, n, "the first slice only")
	require.Equal(t, dailySlice+1, strings.Count(body, "\r\n"))
	require.LessOrEqual(t, len(g.started), 3, "at most the failing slice and the one after it were started")
	require.Zero(t, g.running, "no gate work outlives the export")
}

// A client that goes away during a slice stops the export there.
func TestClientGoneStopsTheSlices(t *testing.T) {
	first := localday.Day{Year: 2020, Month: time.January, Day: 1}
	ctx, cancel := context.WithCancel(context.Background())
	g := &batchGate{cancelAt: first, cancel: cancel, delay: func(localday.Day) time.Duration { return 5 * time.Millisecond }}
	_, n, err := pipelineExport(t, g, ctx, first, first.AddDays(3000))
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, n)
	require.LessOrEqual(t, len(g.started), 2, "nearly a hundred slices; two were started")
	require.Zero(t, g.running)
}
