// Package docker holds the compose files; this test checks them statically
// (CI runs no Docker engine): services, pinned images, ports, volumes,
// healthchecks, and that every file they mount exists in the repository.
package docker

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
)

type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// buildOutputs are mounted paths produced by a build rather than kept in
// the repository: dist/ is the Grafana plugin (npm run build && mage).
var buildOutputs = map[string]string{"../dist": "package.json"}

const pluginID = "metergate-metergate-datasource"

var pinned = regexp.MustCompile(`^[a-z0-9./_-]+:[A-Za-z0-9._-]+$`)

func load(t *testing.T, file string) compose {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var c compose
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	require.NoError(t, dec.Decode(&c), file)
	return c
}

func TestComposeFiles(t *testing.T) {
	for _, tc := range []struct {
		file     string
		services []string
		ports    map[string]string // service → published port
		engine   string            // storage.engine of the metergate configuration
		config   string
	}{
		{"compose.yml", []string{"metergate", "grafana"},
			map[string]string{"metergate": "9464:9464", "grafana": "3000:3000"}, "", "single/metergate.yml"},
		{"compose.cluster.yml", []string{"vmstorage-1", "vmstorage-2", "vminsert", "vmselect", "metergate-1", "metergate-2", "metergate", "grafana"},
			map[string]string{"vminsert": "8480:8480", "vmselect": "8481:8481", "metergate": "9464:9464", "grafana": "3000:3000"}, config.EngineRemote, "cluster/metergate.yml"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := load(t, tc.file)
			var names []string
			for n := range c.Services {
				names = append(names, n)
			}
			require.ElementsMatch(t, tc.services, names)
			for name, s := range c.Services {
				require.True(t, pinned.MatchString(s.Image), "%s: image %q must carry a tag", name, s.Image)
				require.False(t, strings.HasSuffix(s.Image, ":latest"), "%s: pin a version, not latest", name)
				if s.Build != nil {
					require.FileExists(t, filepath.Join(s.Build.Context, s.Build.Dockerfile), name)
				}
				require.NotNil(t, s.Healthcheck, "%s has a healthcheck", name)
				require.NotEmpty(t, s.Healthcheck.Test, name)
				for dep, d := range s.DependsOn {
					require.Contains(t, c.Services, dep, "%s depends on a service of the file", name)
					require.Equal(t, "service_healthy", d.Condition, "%s waits for %s to be healthy", name, dep)
				}
				for _, v := range s.Volumes {
					src, _, ok := strings.Cut(v, ":")
					require.True(t, ok, "%s: volume %q names its target", name, v)
					if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
						require.Contains(t, c.Volumes, src, "%s: named volume %s is declared", name, src)
						continue
					}
					if from, ok := buildOutputs[src]; ok {
						require.FileExists(t, filepath.Join("..", from), "%s: %s is built by %s", name, src, from)
						continue
					}
					_, err := os.Stat(src)
					require.NoError(t, err, "%s mounts %s, which must be in the repository", name, src)
				}
				if want, ok := tc.ports[name]; ok {
					require.Contains(t, s.Ports, want, name)
				}
			}
			g := c.Services["grafana"]
			require.Contains(t, g.Environment["GF_PLUGINS_ALLOW_LOADING_UNSIGNED_PLUGINS"], pluginID)
			require.True(t, slices.ContainsFunc(g.Volumes, func(v string) bool {
				return strings.Contains(v, "/var/lib/grafana/plugins/"+pluginID)
			}), "the plugin is mounted under its id")

			cfg, err := config.Load(tc.config)
			require.NoError(t, err, "the metergate configuration is valid")
			require.Equal(t, tc.engine, cfg.Storage.Engine)
		})
	}
}

// TestCluster checks what makes the cluster file a VictoriaMetrics
// cluster: two storage nodes both known to vminsert and vmselect, and a
// metergate configuration whose URLs reach vminsert and vmselect with a
// tenant path.
func TestCluster(t *testing.T) {
	c := load(t, "compose.cluster.yml")
	for _, s := range []string{"vmstorage-1", "vmstorage-2"} {
		require.Contains(t, c.Services, s)
	}
	raw, err := os.ReadFile("compose.cluster.yml")
	require.NoError(t, err)
	for _, want := range []string{"-storageNode=vmstorage-1:8400", "-storageNode=vmstorage-2:8400", "-storageNode=vmstorage-1:8401", "-storageNode=vmstorage-2:8401"} {
		require.Contains(t, string(raw), want)
	}
	cfg, err := config.Load("cluster/metergate.yml")
	require.NoError(t, err)
	require.Equal(t, "http://vminsert:8480/insert/0/prometheus/api/v1/write", cfg.Storage.Remote.WriteURL)
	require.Equal(t, "http://vmselect:8481/select/0/prometheus", cfg.Storage.Remote.ReadURL)
	require.Contains(t, cfg.AuditLog, "{instance}", "one audit chain per server in the shared directory")
	require.Positive(t, cfg.RegistryCheckInterval, "servers see registry changes without a signal")
}

// TestProvisioning: the provisioned data source is the plugin's.
func TestProvisioning(t *testing.T) {
	b, err := os.ReadFile("grafana/provisioning/datasources/metergate.yml")
	require.NoError(t, err)
	var p struct {
		Datasources []struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	require.NoError(t, yaml.Unmarshal(b, &p))
	require.Len(t, p.Datasources, 1)
	require.Equal(t, pluginID, p.Datasources[0].Type)
	require.Equal(t, "http://metergate:9464", p.Datasources[0].URL)
}
