package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// These tests mirror the checks of Grafana's plugin validator that can be
// run offline: the metadata, the archive's executables and manifest, and
// the backend's sources.

// pluginJSON is the part of plugin.json the validator reads.
type pluginJSON struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	Backend    bool   `json:"backend"`
	Executable string `json:"executable"`
	Alerting   bool   `json:"alerting"`
	Metrics    bool   `json:"metrics"`
	Info       struct {
		Author struct {
			Name string `json:"name"`
		} `json:"author"`
		Description string   `json:"description"`
		Keywords    []string `json:"keywords"`
		Logos       struct {
			Small string `json:"small"`
			Large string `json:"large"`
		} `json:"logos"`
		Version string `json:"version"`
		Updated string `json:"updated"`
	} `json:"info"`
	Dependencies struct {
		GrafanaDependency string `json:"grafanaDependency"`
	} `json:"dependencies"`
}

// Grafana's rule for plugin ids: <org>-<name>-<type>.
var pluginID = regexp.MustCompile(`^[0-9a-z]+\-([0-9a-z]+\-)?(app|panel|datasource)$`)

func readPluginJSON(t *testing.T, path string) pluginJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var p pluginJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	require.NoError(t, dec.Decode(&p), "plugin.json is not valid JSON")
	return p
}

func checkPluginJSON(t *testing.T, p pluginJSON, dir string, released bool) {
	t.Helper()
	require.Regexp(t, pluginID, p.ID, "id must be <org>-<name>-datasource")
	require.Equal(t, "datasource", p.Type)
	require.True(t, strings.HasSuffix(p.ID, "-"+p.Type), "the id ends with the plugin type")
	require.NotEmpty(t, p.Name)
	require.True(t, p.Backend, "backend: true")
	require.True(t, p.Alerting, "alerting: true (alert rules need the backend)")
	require.True(t, p.Metrics)
	require.Regexp(t, `^gpx_[a-z0-9_]+$`, p.Executable, "executable is gpx_<name>")
	require.NotEmpty(t, p.Info.Author.Name)
	require.NotEmpty(t, p.Info.Description)
	require.NotEmpty(t, p.Info.Keywords)
	require.NotEmpty(t, p.Dependencies.GrafanaDependency)
	require.Regexp(t, `^>=\d+\.\d+\.\d+`, p.Dependencies.GrafanaDependency)
	for _, logo := range []string{p.Info.Logos.Small, p.Info.Logos.Large} {
		require.NotEmpty(t, logo)
		require.FileExists(t, filepath.Join(dir, logo), "logo")
	}
	if released {
		require.Regexp(t, `^\d+\.\d+\.\d+`, p.Info.Version, "a released plugin.json has a semantic version")
		require.Regexp(t, `^\d{4}-\d{2}-\d{2}$`, p.Info.Updated)
	} else {
		require.Equal(t, "%VERSION%", p.Info.Version, "src/plugin.json keeps the placeholder the build fills")
	}
}

func TestSourcePluginJSON(t *testing.T) {
	src := filepath.Join(repoRoot(), "src")
	checkPluginJSON(t, readPluginJSON(t, filepath.Join(src, "plugin.json")), src, false)
}

// sourceManifest is the validator's view of go_plugin_build_manifest: the
// SHA-256 of every Go source file of the module, "hash:path" lines.
func sourceManifest(root string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && (rel == "node_modules" || rel == ".git" || rel == "dist") {
			return fs.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(content)
		b.WriteString(hex.EncodeToString(sum[:]) + ":" + filepath.ToSlash(rel) + "\n")
		return nil
	})
	return b.String(), err
}

// checkManifest compares a manifest with the sources it claims to hash.
func checkManifest(t *testing.T, manifestPath string) {
	t.Helper()
	b, err := os.ReadFile(manifestPath)
	require.NoError(t, err, "go_plugin_build_manifest is missing")
	want, err := sourceManifest(repoRoot())
	require.NoError(t, err)
	got := strings.Split(strings.TrimSpace(string(b)), "\n")
	exp := strings.Split(strings.TrimSpace(want), "\n")
	slices.Sort(got)
	slices.Sort(exp)
	require.Equal(t, exp, got, "the manifest must list every Go source with its SHA-256 (rebuild with mage if sources changed)")
}

// checkDist runs the archive checks on a built plugin directory.
func checkDist(t *testing.T, dir string, platforms []string) {
	t.Helper()
	p := readPluginJSON(t, filepath.Join(dir, "plugin.json"))
	for _, platform := range platforms {
		name := p.Executable + "_" + platform
		if strings.HasPrefix(platform, "windows") {
			name += ".exe"
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, "executable %s", name)
		require.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), "%s must be 0755", name)
	}
	for _, forbidden := range []string{"standalone.txt", "pid.txt"} {
		require.NoFileExists(t, filepath.Join(dir, forbidden), "debug leftovers must not ship")
	}
	checkManifest(t, filepath.Join(dir, "go_plugin_build_manifest"))
}

func TestBuiltPlugin(t *testing.T) {
	checkPluginJSON(t, readPluginJSON(t, filepath.Join(built, "plugin.json")), filepath.Join(repoRoot(), "src"), true)
	checkDist(t, built, []string{runtime.GOOS + "_" + runtime.GOARCH})
}

// TestDist checks dist/ when `mage` has built it: every platform, the
// frontend and the manifest of the current sources.
func TestDist(t *testing.T) {
	dist := filepath.Join(repoRoot(), "dist")
	if _, err := os.Stat(filepath.Join(dist, "go_plugin_build_manifest")); err != nil {
		// CI builds dist/ first and sets METERGATE_REQUIRE_DIST, so there a
		// missing build fails instead of skipping.
		if os.Getenv("METERGATE_REQUIRE_DIST") != "" {
			t.Fatal("dist/ has no backend build although METERGATE_REQUIRE_DIST is set")
		}
		t.Skip("dist/ has no backend build: run `go run github.com/magefile/mage -v` then `npm run build`")
	}
	checkDist(t, dist, []string{"linux_amd64", "linux_arm64", "linux_arm", "darwin_amd64", "darwin_arm64", "windows_amd64"})
	if _, err := os.Stat(filepath.Join(dist, "module.js")); err == nil {
		checkPluginJSON(t, readPluginJSON(t, filepath.Join(dist, "plugin.json")), dist, true)
	}
}

// TestBackendSourcesAreClean scans the plugin's Go sources: a Grafana
// backend plugin reads its configuration from Grafana, not the environment,
// touches no file system and prints nothing on stdout (the go-plugin
// handshake line is stdout).
func TestBackendSourcesAreClean(t *testing.T) {
	forbiddenImports := map[string]string{
		"os":        "environment and file system",
		"io/ioutil": "file system",
		"syscall":   "system calls",
		"os/exec":   "processes",
	}
	dir := filepath.Join(repoRoot(), "backend")
	fset := token.NewFileSet()
	scanned := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "e2e" {
			return fs.SkipDir // the tests launch processes on purpose
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		scanned++
		names := map[string]string{} // local name → import path
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if why, bad := forbiddenImports[p]; bad {
				t.Errorf("%s imports %s (%s)", fset.Position(imp.Pos()), p, why)
			}
			name := filepath.Base(p)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			names[name] = p
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				pkg, ok := fn.X.(*ast.Ident)
				if !ok {
					return true
				}
				switch path := names[pkg.Name]; {
				case path == "fmt" && strings.HasPrefix(fn.Sel.Name, "Print"):
					t.Errorf("%s: fmt.%s writes to stdout, which belongs to the go-plugin handshake", fset.Position(call.Pos()), fn.Sel.Name)
				case path == "os":
					t.Errorf("%s: os.%s", fset.Position(call.Pos()), fn.Sel.Name)
				}
			case *ast.Ident:
				if fn.Name == "print" || fn.Name == "println" {
					t.Errorf("%s: builtin %s", fset.Position(call.Pos()), fn.Name)
				}
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, scanned, 5, "the scan must see the backend's sources")
}
