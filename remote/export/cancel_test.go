package export

import (
	"context"
	"io"
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

// countingGate answers every query with nothing and counts the calls; it
// cancels the export's context after the first call, as a client that
// hangs up does.
type countingGate struct {
	calls  int
	cancel context.CancelFunc
}

func (g *countingGate) Exec(ctx context.Context, _ *config.Caller, _ gate.Request) (*gate.Result, error) {
	g.calls++
	g.cancel()
	return &gate.Result{Value: promql.Matrix{}}, ctx.Err()
}

func (g *countingGate) Now() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, localday.Paris) }

func TestClientGoneStopsTheWork(t *testing.T) {
	reg, err := registry.New(&registry.Registry{Perimeters: []registry.Perimeter{{Name: "all", UseCase: registry.UC4,
		Audience: registry.Public, Flow: "consumption", Select: registry.Selector{All: true}}}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	g := &countingGate{cancel: cancel}
	e := &Exporter{Gate: g, Registry: func() *registry.Registry { return reg }}
	c := &config.Caller{Name: "p", Audience: registry.Public}
	s, err := e.Check(c, Spec{UseCase: registry.UC4, Nature: catalogue.Daily, From: localday.Day{Year: 2020, Month: 1, Day: 1}, To: localday.Day{Year: 2028, Month: 12, Day: 31}})
	require.NoError(t, err)
	_, err = e.Write(ctx, io.Discard, c, s, Format{})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, g.calls, "nine years would be 432 queries")
}

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"=1+2": "'=1+2", "+33": "'+33", "-2": "'-2", "@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "\rx": "'\rx",
		"confluence": "confluence", "09111642617347": "09111642617347", "": "",
	} {
		require.Equal(t, want, Text(in), "%q", in)
	}
	require.Equal(t, "-12.5", number(-12.5), "numbers are not text")
	require.Equal(t, "1234567", number(1234567))
}
