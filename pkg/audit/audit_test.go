package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestChainAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	reg := prometheus.NewRegistry()
	l, err := Open(path, reg)
	require.NoError(t, err)
	require.NoError(t, l.Append(Record{Caller: "a", Audience: "public", Query: "q1", Decision: Allowed, Rows: 3}))
	require.NoError(t, l.Append(Record{Caller: "b", Audience: "public", Query: "q2", Decision: Refused, Rule: "form"}))
	require.NoError(t, l.Close())
	assert := require.New(t)
	assert.Equal(1.0, testutil.ToFloat64(l.decisions.WithLabelValues("public", Refused, "form")))

	// Reopening resumes the chain.
	l, err = Open(path, nil)
	assert.NoError(err)
	assert.NoError(l.Append(Record{Caller: "c", Query: "q3", Decision: Allowed}))
	assert.NoError(l.Close())
	n, err := Verify(path)
	assert.NoError(err)
	assert.Equal(3, n)

	b, err := os.ReadFile(path)
	assert.NoError(err)
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))

	// Editing a line breaks the chain at the next line.
	edited := bytes.Replace(b, []byte(`"rows":3`), []byte(`"rows":4`), 1)
	assert.NoError(os.WriteFile(path, edited, 0o600))
	_, err = Verify(path)
	assert.ErrorContains(err, ":2: chain broken")

	// Removing a line is detected too.
	removed := append(append(append([]byte{}, lines[0]...), '\n'), append(lines[2], '\n')...)
	assert.NoError(os.WriteFile(path, removed, 0o600))
	_, err = Verify(path)
	assert.ErrorContains(err, ":2: chain broken")

	// Opening a tampered log fails rather than extending a broken chain.
	_, err = Open(path, nil)
	assert.Error(err)
}

// A record cut short by a crash or a full disk (no newline: never synced,
// never answered) is cut off at Open; the chain goes on after it.
func TestOpenCutsUnfinishedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, l.Append(Record{Caller: "a", Query: "q1", Decision: Allowed}))
	require.NoError(t, l.Close())
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"time":"2026-11-29T12:00:00Z","caller":"b","que`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = Verify(path)
	require.ErrorContains(t, err, ":2: truncated record")

	l, err = Open(path, nil)
	require.NoError(t, err)
	require.EqualValues(t, 48, l.TruncatedTail)
	require.NoError(t, l.Append(Record{Caller: "c", Query: "q2", Decision: Allowed}))
	require.NoError(t, l.Close())
	n, err := Verify(path)
	require.NoError(t, err)
	require.Equal(t, 2, n)
}
