package main

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	st "github.com/metergate/metergate/remote/server/servertest"
)

// TestDemoAsTheREADMEShows runs the README's first command from the
// checkout's root, as a newcomer would (with two weeks of history instead
// of ninety days), and follows what it prints: the server is ready, the
// three curl commands of "Try:" answer as their comments say (the
// operator's count covers the district, the public sum publishes a value,
// the maximum is refused), nothing alarming is logged, and Ctrl-C stops it
// cleanly.
func TestDemoAsTheREADMEShows(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	dir := t.TempDir()
	cmd := exec.Command(binary, "demo", "-dir", filepath.Join(dir, "demo"), "-listen", "127.0.0.1:0", "-days", "14")
	cmd.Dir = filepath.Join("..", "..")
	// The demo's log goes to a file, as startProcess's does: read while the
	// demo writes it, it needs no lock.
	logf, err := os.Create(filepath.Join(dir, "demo.log"))
	require.NoError(t, err)
	t.Cleanup(func() { logf.Close() })
	cmd.Stderr = logf
	stderr := logReader(filepath.Join(dir, "demo.log"))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd}
	t.Cleanup(p.kill)

	printed := make(chan string, 1)
	go func() {
		var out strings.Builder
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			out.WriteString(lines.Text() + "\n")
			if strings.HasPrefix(lines.Text(), "The district stays live") {
				printed <- out.String()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var welcome string
	select {
	case welcome = <-printed:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the demo never said it was ready:\n%s", stderr.String())
	}
	require.Contains(t, welcome, "metergate demo is ready: 14 days")

	try := welcome[strings.Index(welcome, "Try:"):]
	commands := curlCommands(try)
	require.Len(t, commands, 3, "Try: shows three commands:\n%s", try)

	value := func(c curlCommand, what string) float64 {
		t.Helper()
		code, r := c.do(t)
		require.Equal(t, http.StatusOK, code, r.Error)
		require.Len(t, r.Data.Result, 1, what)
		v, err := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
		require.NoError(t, err)
		return v
	}
	require.Greater(t, value(commands[0], "the operator's count"), 7000.0, "the operator's count covers the district's meters")
	require.Greater(t, value(commands[1], "the district's daily consumption is published"), 1e6, "a district's day is megawatt-hours")
	code, r := commands[2].do(t)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, "query refused by the privacy policy", r.Error)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "Ctrl-C stops the demo cleanly:\n%s", stderr.String())
	case <-time.After(time.Minute):
		t.Fatalf("the demo did not stop on Ctrl-C:\n%s", stderr.String())
	}
	// Errors and the TSDB's warnings (65 lines of them before
	// store.tsdbLogger) fail the test; another warning is shown, since a
	// loaded machine may have reasons to warn (a slow rule evaluation).
	for _, line := range strings.Split(stderr.String(), "\n") {
		require.NotRegexp(t, `level=ERROR|panic|level=WARN.*component=tsdb`, line, "the demo logs nothing alarming")
		if strings.Contains(line, "level=WARN") {
			t.Log(line)
		}
	}
}

// curlCommand is one of the curl commands the demo prints: a POST of
// url-encoded fields, with a bearer token or none.
type curlCommand struct {
	url, token string
	form       url.Values
}

var (
	curlURL    = regexp.MustCompile(`(http://\S+)`)
	curlBearer = regexp.MustCompile(`-H 'Authorization: Bearer (\w+)'`)
	curlField  = regexp.MustCompile(`--data-urlencode '([^=]+)=([^']*)'`)
)

// curlCommands reads the curl commands of text, joining continued lines.
func curlCommands(text string) []curlCommand {
	text = strings.ReplaceAll(text, "\\\n", " ")
	var out []curlCommand
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		c := curlCommand{url: curlURL.FindString(line), form: url.Values{}}
		if m := curlBearer.FindStringSubmatch(line); m != nil {
			c.token = m[1]
		}
		for _, m := range curlField.FindAllStringSubmatch(line, -1) {
			c.form.Add(m[1], m[2])
		}
		out = append(out, c)
	}
	return out
}

func (c curlCommand) do(t *testing.T) (int, st.QueryResponse) {
	t.Helper()
	return st.PostForm(t, c.url, c.token, c.form)
}

// logReader reads a log file whole, for failure messages and checks.
type logReader string

func (l logReader) String() string {
	b, _ := os.ReadFile(string(l))
	return string(b)
}
