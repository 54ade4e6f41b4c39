package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/build/utils"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/backend/plugin"
)

// built is the plugin directory TestMain assembles: the backend binary for
// the host platform, plugin.json and the build manifest, as `mage` does for
// every platform.
var built string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "metergate-plugin-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if err := buildPlugin(dir); err != nil {
			os.Stderr.WriteString("building the plugin: " + err.Error() + "\n")
			return 1
		}
		built = dir
		return m.Run()
	}()
	os.Exit(code)
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func executable() string {
	name := "gpx_metergate_" + runtime.GOOS + "_" + runtime.GOARCH
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return name
}

// buildPlugin builds the host's binary with the flags of the SDK's build
// package (static, stripped, arrow_json_stdlib), copies plugin.json and
// writes the manifest of the Go sources.
func buildPlugin(dir string) error {
	root := repoRoot()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, executable()), "-tags", "arrow_json_stdlib",
		"-ldflags", "-w -s", "./backend")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return errors.New(string(out))
	}
	b, err := os.ReadFile(filepath.Join(root, "src", "plugin.json"))
	if err != nil {
		return err
	}
	b = []byte(strings.NewReplacer("%VERSION%", "0.1.0", "%TODAY%", "2024-04-10").Replace(string(b)))
	if err := os.WriteFile(filepath.Join(dir, "plugin.json"), b, 0o644); err != nil {
		return err
	}
	// The SDK's own manifest writer (what `mage` runs), from the module root;
	// the validator checks below recompute it independently.
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	manifest, err := utils.GenerateManifest()
	if cerr := os.Chdir(wd); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "go_plugin_build_manifest"), []byte(manifest), 0o644)
}

// pluginClients are the gRPC services Grafana uses.
type pluginClients struct {
	data        grpcplugin.DataClient
	diagnostics grpcplugin.DiagnosticsClient
	resource    grpcplugin.ResourceClient
}

// launch starts the plugin binary as Grafana does: hashicorp/go-plugin with
// the SDK's handshake (magic cookie, protocol version 2), gRPC only, the
// plugin map Grafana dispenses from.
func launch(t *testing.T) pluginClients {
	t.Helper()
	cmd := exec.Command(filepath.Join(built, executable()))
	cmd.Env = append(os.Environ(), "GF_VERSION=12.4.10", "GF_EDITION=oss", "GF_PLUGIN_VERSION=0.1.0")
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  grpcplugin.ProtocolVersion,
			MagicCookieKey:   grpcplugin.MagicCookieKey,
			MagicCookieValue: grpcplugin.MagicCookieValue,
		},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"resource":    &grpcplugin.ResourceGRPCPlugin{},
			"data":        &grpcplugin.DataGRPCPlugin{},
			"stream":      &grpcplugin.StreamGRPCPlugin{},
		}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: io.Discard, Level: hclog.Error}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	require.NoError(t, err, "go-plugin handshake")
	var pc pluginClients
	for name, dst := range map[string]any{"data": &pc.data, "diagnostics": &pc.diagnostics, "resource": &pc.resource} {
		raw, err := rpc.Dispense(name)
		require.NoError(t, err, name)
		switch d := dst.(type) {
		case *grpcplugin.DataClient:
			*d = raw.(grpcplugin.DataClient)
		case *grpcplugin.DiagnosticsClient:
			*d = raw.(grpcplugin.DiagnosticsClient)
		case *grpcplugin.ResourceClient:
			*d = raw.(grpcplugin.ResourceClient)
		}
	}
	return pc
}

// settings are a data source's instance settings as Grafana sends them.
func settings(url, token string) *backend.DataSourceInstanceSettings {
	return &backend.DataSourceInstanceSettings{
		// Grafana gives each data source its own UID; the SDK's instance
		// manager caches an instance per UID and settings version.
		ID: 1, UID: fmt.Sprintf("mg-%x", sha256.Sum256([]byte(url+"\n"+token))), Name: "metergate", Type: plugin.ID, URL: url,
		JSONData: []byte(`{}`), DecryptedSecureJSONData: map[string]string{"token": token},
		Updated: time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC),
	}
}

func pctx(s *backend.DataSourceInstanceSettings) backend.PluginContext {
	return backend.PluginContext{OrgID: 1, PluginID: plugin.ID, DataSourceInstanceSettings: s}
}

func (pc pluginClients) checkHealth(t *testing.T, s *backend.DataSourceInstanceSettings) *backend.CheckHealthResult {
	t.Helper()
	resp, err := pc.diagnostics.CheckHealth(context.Background(), &pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pctx(s))})
	require.NoError(t, err)
	return backend.FromProto().CheckHealthResponse(resp)
}

func (pc pluginClients) queryData(t *testing.T, s *backend.DataSourceInstanceSettings, queries ...backend.DataQuery) *backend.QueryDataResponse {
	t.Helper()
	req := &backend.QueryDataRequest{PluginContext: pctx(s), Queries: queries}
	resp, err := pc.data.QueryData(context.Background(), backend.ToProto().QueryDataRequest(req))
	require.NoError(t, err)
	out, err := backend.FromProto().QueryDataResponse(resp)
	require.NoError(t, err)
	return out
}

func (pc pluginClients) callResource(t *testing.T, s *backend.DataSourceInstanceSettings, method, path string, body []byte) (int, string) {
	t.Helper()
	// As Grafana sends it: the path without the query string, the URL with.
	req := &backend.CallResourceRequest{PluginContext: pctx(s), Method: method, Path: strings.SplitN(path, "?", 2)[0], URL: path, Body: body,
		Headers: map[string][]string{"Content-Type": {"application/json"}}}
	stream, err := pc.resource.CallResource(context.Background(), backend.ToProto().CallResourceRequest(req))
	require.NoError(t, err)
	code := 0
	var out strings.Builder
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if msg.Code != 0 {
			code = int(msg.Code)
		}
		out.Write(msg.Body)
	}
	return code, out.String()
}
