package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDemoAsTheREADMEShows runs the README's first command from the
// checkout's root, as a newcomer would (with two weeks of history instead
// of ninety days), and follows what it prints: the server is ready, the
// three curl commands of "Try:" answer as their comments say (the
// operator's count covers the district, the public sum publishes a value,
// the maximum is refused), nothing is logged at warning level or above,
// and Ctrl-C stops it cleanly.
func TestDemoAsTheREADMEShows(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	cmd := exec.Command(binary, "demo", "-dir", t.TempDir(), "-listen", "127.0.0.1:0", "-days", "14")
	cmd.Dir = filepath.Join("..", "..")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
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

	var count, sum struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	code, body := commands[0].do(t)
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, json.Unmarshal([]byte(body), &count))
	require.Len(t, count.Data.Result, 1, body)
	meters, err := strconv.Atoi(count.Data.Result[0].Value[1].(string))
	require.NoError(t, err)
	require.Greater(t, meters, 7000, "the operator's count covers the district's meters")

	code, body = commands[1].do(t)
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, json.Unmarshal([]byte(body), &sum))
	require.Len(t, sum.Data.Result, 1, "the district's daily consumption is published: %s", body)
	wh, err := strconv.ParseFloat(sum.Data.Result[0].Value[1].(string), 64)
	require.NoError(t, err)
	require.Greater(t, wh, 1e6, "a district's day is megawatt-hours")

	code, body = commands[2].do(t)
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "refused by the privacy policy")

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "Ctrl-C stops the demo cleanly:\n%s", stderr.String())
	case <-time.After(time.Minute):
		t.Fatalf("the demo did not stop on Ctrl-C:\n%s", stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		require.NotRegexp(t, `level=(WARN|ERROR)|panic`, line, "the demo logs nothing alarming")
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

func (c curlCommand) do(t *testing.T) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url, strings.NewReader(c.form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// lockedBuffer is a bytes.Buffer a process writes to while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
