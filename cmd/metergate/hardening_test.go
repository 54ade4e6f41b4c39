package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// runAudit runs `metergate audit verify -file path`.
func runAudit(t *testing.T, path string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary, "audit", "verify", "-file", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	require.NoError(t, err)
	return 0, string(out)
}

// A server's real audit log verifies; one edited or one removed line is
// found and named.
func TestAuditVerifyFindsTampering(t *testing.T) {
	dir := t.TempDir()
	writeServerDir(t, dir, &registry.Registry{})
	p := startProcess(t, dir)
	for i := range 5 {
		code, r := st.Query(t, p.URL, st.OperatorToken, fmt.Sprintf("vector(%d)", i), time.Now())
		require.Equal(t, http.StatusOK, code, r.Error)
	}
	p.terminate(t)
	path := filepath.Join(dir, "audit.log")
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(orig), "\n")
	require.Len(t, lines, 6) // five records and the empty tail

	code, out := runAudit(t, path)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "5 records, chain intact")

	for _, tc := range []struct {
		name   string
		tamper func([]string) []string
		line   string
	}{
		// Line 2 edited: its digest no longer matches line 3's prev.
		{"line edited", func(l []string) []string {
			l[1] = strings.Replace(l[1], `"vector(1)"`, `"vector(7)"`, 1)
			return l
		}, ":3: chain broken"},
		// Line 3 removed: line 4, now third, points to the removed line.
		{"line removed", func(l []string) []string { return append(l[:2:2], l[3:]...) }, ":3: chain broken"},
		{"lines swapped", func(l []string) []string { l[1], l[2] = l[2], l[1]; return l }, ":2: chain broken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tampered := tc.tamper(append([]string(nil), lines...))
			require.NotEqual(t, string(orig), strings.Join(tampered, ""), "the tampering changed nothing")
			require.NoError(t, os.WriteFile(path, []byte(strings.Join(tampered, "")), 0o600))
			code, out := runAudit(t, path)
			require.NotEqual(t, 0, code, out)
			require.Contains(t, out, tc.line)
		})
	}
	code, out = runAudit(t, filepath.Join(dir, "missing.log"))
	require.NotEqual(t, 0, code, out)
}

// SIGHUP reloads the callers: a new hashed token works, a removed one gets
// 401, and an invalid file keeps the callers in force.
func TestSIGHUPReloadsCallers(t *testing.T) {
	dir := t.TempDir()
	writeServerDir(t, dir, &registry.Registry{})
	p := startProcess(t, dir)
	const newToken = "rotated-operator-token-0123456789"
	query := func(token string) int {
		code, _ := st.Query(t, p.URL, token, "vector(1)", time.Now())
		return code
	}
	require.Equal(t, http.StatusOK, query(st.OperatorToken))
	require.Equal(t, http.StatusUnauthorized, query(newToken))

	cfg := config.Defaults()
	for _, c := range st.Callers {
		if c.Name == "admin" { // rotated: the old token goes, the new one is stored hashed
			c.Token, c.TokenSHA256 = "", config.HashToken(newToken)
		}
		cfg.Callers = append(cfg.Callers, c)
	}
	b, err := yaml.Marshal(&cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, "metergate.yml")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return query(newToken) == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusUnauthorized, query(st.OperatorToken))

	require.NoError(t, os.WriteFile(path, []byte("callers: [{name: x, token: short}]\n"), 0o600))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return bytes.Contains(log, []byte("reload refused"))
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusOK, query(newToken), "an invalid configuration keeps the callers in force")
	p.terminate(t)
}

// ingestUntilKilled sends batches of every series at timestamps base+i s
// until the server stops acknowledging, and returns how many were.
func ingestUntilKilled(t *testing.T, p *process, rmps []string, base time.Time, killAfter time.Duration) int {
	t.Helper()
	acked := 0
	deadline := time.Now().Add(killAfter)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			p.kill()
		}
		series := make([]st.Series, len(rmps))
		for s, rmp := range rmps {
			series[s] = st.Series{Labels: labels.FromStrings("__name__", "linky_index_wh", "rmp", rmp),
				Samples: []prompb.Sample{{Timestamp: base.Add(time.Duration(i) * time.Second).UnixMilli(), Value: float64(i)}}}
		}
		code, err := post(p.URL, st.EncodeV1(t, series))
		if err != nil || code != http.StatusNoContent {
			return acked
		}
		acked = i + 1
	}
}

// storedTimestamps reads every series' sample indexes (value = index).
func storedIndexes(t *testing.T, url string, end time.Time) map[string][]int {
	t.Helper()
	code, r := st.Query(t, url, st.OperatorToken, "linky_index_wh[3h]", end)
	require.Equal(t, http.StatusOK, code, r.Error)
	out := map[string][]int{}
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			var i int
			_, err := fmt.Sscan(v[1].(string), &i)
			require.NoError(t, err)
			out[s.Metric["rmp"]] = append(out[s.Metric["rmp"]], i)
		}
		sort.Ints(out[s.Metric["rmp"]])
	}
	return out
}

// Bytes flipped in the last WAL segment of a killed server: the server
// starts, keeps every series' intact prefix, and reports the repair.
func TestCorruptWALIsRepaired(t *testing.T) {
	dir := t.TempDir()
	writeServerDir(t, dir, &registry.Registry{})
	p := startProcess(t, dir)
	rmps := make([]string, 50)
	for i := range rmps {
		rmps[i] = fmt.Sprintf("7%013d", i)
	}
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	acked := ingestUntilKilled(t, p, rmps, base, 1500*time.Millisecond)
	require.Greater(t, acked, 20)

	segs, err := filepath.Glob(filepath.Join(dir, "data", "wal", "0*"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	last := segs[len(segs)-1]
	b, err := os.ReadFile(last)
	require.NoError(t, err)
	at := len(b) / 2
	for i := at; i < at+64 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	require.NoError(t, os.WriteFile(last, b, 0o644))
	t.Logf("flipped 64 bytes at offset %d of %s (%d bytes), %d batches acknowledged", at, filepath.Base(last), len(b), acked)

	p = startProcess(t, dir)
	stored := storedIndexes(t, p.URL, base.Add(time.Hour))
	kept := acked
	for _, rmp := range rmps {
		got := stored[rmp]
		for i, v := range got {
			require.Equal(t, i, v, "series %s has a hole at %d: not a prefix", rmp, i)
		}
		kept = min(kept, len(got))
	}
	require.Positive(t, kept, "the samples before the corruption are kept")
	require.Less(t, kept, acked, "the corruption dropped the newest samples (else the test did not corrupt)")
	t.Logf("every series kept at least its first %d of %d samples", kept, acked)

	code, r := st.Get(t, p.URL, st.ScrapeToken, "/metrics", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, r.Error, "prometheus_tsdb_wal_corruptions_total 1")
	log, err := os.ReadFile(filepath.Join(dir, "server.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), "write-ahead log was corrupt and has been repaired")
	p.terminate(t)
}
