package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// A batch is the same bytes as its records appended one by one (the same
// chain), written with one sync; a failed batch keeps none of its records.
func TestAppendBatch(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	rs := []Record{
		{Time: at, Caller: "a", Audience: "public", Query: "sum(x)", Decision: Allowed, Rows: 31},
		{Time: at, Caller: "a", Audience: "public", Query: "quantile(0.5, x)", Decision: Allowed, Suppressed: []string{"set_size"}},
		{Time: at, Caller: "a", Audience: "public", Query: "max(x)", Decision: Refused, Rule: "form"},
	}
	dir := t.TempDir()
	one, batch := filepath.Join(dir, "one.log"), filepath.Join(dir, "batch.log")
	l, err := Open(one, nil)
	require.NoError(t, err)
	for _, r := range append(rs, rs...) {
		require.NoError(t, l.Append(r))
	}
	require.NoError(t, l.Close())

	reg := prometheus.NewRegistry()
	l, err = Open(batch, reg)
	require.NoError(t, err)
	require.NoError(t, l.AppendBatch(rs))
	require.NoError(t, l.AppendBatch(nil))
	require.NoError(t, l.AppendBatch(rs))
	require.Equal(t, 2.0, testutil.ToFloat64(l.decisions.WithLabelValues("public", Refused, "form")))
	require.Equal(t, 2.0, testutil.ToFloat64(l.suppressed.WithLabelValues("public", "set_size")))

	want, err := os.ReadFile(one)
	require.NoError(t, err)
	got, err := os.ReadFile(batch)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
	n, err := Verify(batch)
	require.NoError(t, err)
	require.Equal(t, 6, n)

	// A batch that cannot be written is refused whole.
	require.NoError(t, l.f.Close())
	require.Error(t, l.AppendBatch(rs))
	require.Equal(t, 2.0, testutil.ToFloat64(l.decisions.WithLabelValues("public", Refused, "form")), "nothing counted")
	require.Equal(t, 3.0, testutil.ToFloat64(l.failures))
	n, err = Verify(batch)
	require.NoError(t, err)
	require.Equal(t, 6, n)
}
