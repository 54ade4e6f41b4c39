package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// storage.remote.evaluate: the engine computes by default, the gate on
// request, and nothing else is accepted.
func TestParseEvaluate(t *testing.T) {
	const remote = "storage:\n  engine: remote\n  remote:\n    kind: victoriametrics\n    write_url: http://vm:8428/api/v1/write\n    read_url: http://vm:8428\n    queue_dir: q\n"
	c, err := Parse([]byte(remote))
	require.NoError(t, err)
	require.Empty(t, c.Storage.Remote.Evaluate, "empty is the engine, the default")
	for _, v := range []string{EvaluateEngine, EvaluateGate} {
		c, err := Parse([]byte(remote + "    evaluate: " + v + "\n"))
		require.NoError(t, err, v)
		require.Equal(t, v, c.Storage.Remote.Evaluate)
	}
	_, err = Parse([]byte(remote + "    evaluate: grafana\n"))
	require.ErrorContains(t, err, "remote.evaluate must be engine or gate")
}
