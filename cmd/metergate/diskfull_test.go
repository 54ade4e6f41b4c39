package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/registry"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips the
// test where mounting is not allowed (not root, no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" && os.Geteuid() == 0 {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (%v: %s); the storage-failure path is covered by TestStorageFailureIsRetryable", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling: %v", err)
			return
		}
	}
}

// On a full disk writes get 5xx (senders retry), nothing acknowledged is
// lost, and ingestion resumes when space returns, without a restart.
func TestDiskFullThenResume(t *testing.T) {
	dir := mountTmpfs(t, "64m")
	writeServerDir(t, dir, &registry.Registry{})
	p := startProcess(t, dir)
	t.Cleanup(p.kill) // before the unmount

	const nSeries = 100
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	batch := func(i int) []byte {
		series := make([]st.Series, nSeries)
		for s := range series {
			series[s] = st.Series{Labels: labels.FromStrings("__name__", "linky_index_wh", "rmp", fmt.Sprintf("6%013d", s)),
				Samples: []prompb.Sample{{Timestamp: base.Add(time.Duration(i) * time.Second).UnixMilli(), Value: float64(i)}}}
		}
		return st.EncodeV1(t, series)
	}
	acked := map[int]bool{}
	send := func(i int) int {
		code, err := post(p.URL, batch(i))
		require.NoError(t, err)
		if code == http.StatusNoContent {
			acked[i] = true
		}
		return code
	}
	for i := range 50 {
		require.Equal(t, http.StatusNoContent, send(i))
	}

	// Audited reads before the disk fills: the log's last page has room
	// for part of a record, so a record may be written in part.
	for i := range 5 {
		code, r := st.Query(t, p.URL, st.OperatorToken, fmt.Sprintf("count(linky_index_wh) + %d", i), base.Add(time.Hour))
		require.Equal(t, http.StatusOK, code, r.Error)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	// The WAL writes in 32 KiB pages: keep sending until one does not fit.
	next, failures := 50, 0
	for ; next < 5000 && failures == 0; next++ {
		code := send(next)
		switch {
		case code == http.StatusNoContent:
		case code >= 500:
			failures++
		default:
			t.Fatalf("batch %d on a full disk: %d, want 5xx so that the sender retries", next, code)
		}
	}
	require.Equal(t, 1, failures, "no write failed on a full disk")
	t.Logf("disk full after %d batches", next)
	failed := next - 1
	for range 3 { // retries on a still-full disk keep failing, with 5xx
		require.GreaterOrEqual(t, send(failed), 500)
	}
	// Reads fail closed: no audit record, no answer. The records that still
	// fit in the log's last page are written; then every read gets 503.
	refused := 0
	for i := 0; i < 100 && refused < 3; i++ {
		code, r := st.Query(t, p.URL, st.OperatorToken, "count(linky_index_wh)", base.Add(time.Hour))
		switch code {
		case http.StatusOK:
			require.Zero(t, refused, "a read answered after one was refused for the full disk")
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("read on a full disk: %d %s", code, r.Error)
		}
	}
	require.Equal(t, 3, refused)
	code, r := st.Get(t, p.URL, st.ScrapeToken, "/metrics", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, r.Error, "metergate_audit_write_failures_total 3")

	require.NoError(t, os.Remove(filler))
	// The sender's retry goes through once space is back, without a restart.
	require.Eventually(t, func() bool { return send(failed) == http.StatusNoContent }, 10*time.Second, 100*time.Millisecond)
	for i := failed + 1; i < failed+50; i++ {
		require.Equal(t, http.StatusNoContent, send(i))
	}

	check := func(p *process) {
		stored := storedIndexes(t, p.URL, base.Add(2*time.Hour))
		require.Len(t, stored, nSeries)
		for rmp, got := range stored {
			have := map[int]bool{}
			for _, v := range got {
				have[v] = true
			}
			for i := range acked {
				require.True(t, have[i], "series %s lost acknowledged batch %d", rmp, i)
			}
		}
	}
	check(p)
	p.kill() // and after a crash, from the WAL
	p = startProcess(t, dir)
	check(p)
	p.terminate(t)
	code, out := runAudit(t, filepath.Join(dir, "audit.log"))
	require.Equal(t, 0, code, "the audit log survives the full disk: %s", out)
}
