package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// binary is the metergate command built once for the tests that run it as
// a separate process, as an operator would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "metergate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "metergate")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building metergate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a metergate serve running as its own process.
type process struct {
	URL string
	cmd *exec.Cmd
	dir string
}

// writeServerDir writes a configuration and a registry into dir.
func writeServerDir(t *testing.T, dir string, reg *registry.Registry) {
	t.Helper()
	require.NoError(t, registry.Save(filepath.Join(dir, "registry"), reg))
	cfg := config.Defaults()
	cfg.Callers = st.Callers
	b, err := yaml.Marshal(&cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "metergate.yml"), b, 0o600))
}

// startProcess runs `metergate serve` on a free port with the data in dir.
func startProcess(t *testing.T, dir string) *process {
	t.Helper()
	cmd := exec.Command(binary, "serve", "-config", filepath.Join(dir, "metergate.yml"), "-listen", "127.0.0.1:0", "-log.level", "warn")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	logf, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	t.Cleanup(func() { logf.Close() })
	cmd.Stderr = logf
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, dir: dir}
	t.Cleanup(func() { p.kill() })
	lines := bufio.NewScanner(stdout)
	got := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if u, ok := strings.CutPrefix(lines.Text(), "metergate listening on "); ok {
				got <- u
			}
		}
	}()
	select {
	case p.URL = <-got:
	case <-time.After(60 * time.Second):
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("metergate did not start:\n%s", log)
	}
	st.WaitOK(t, p.URL+"/-/ready")
	return p
}

func (p *process) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

func (p *process) terminate(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait(), "metergate must exit cleanly on SIGTERM")
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// needBinary finds a peer's binary (Prometheus, vmagent). CI installs them,
// so there a missing one fails the test; elsewhere it is skipped.
func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run installs it", name)
		}
		t.Skipf("%s is not installed (apt-get install prometheus victoria-metrics)", name)
	}
	return p
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
