//go:build mage

// Magefile builds the Grafana plugin's backend with the plugin SDK's build
// package: `mage -v` (or `go run github.com/magefile/mage -v`) writes
// dist/gpx_metergate_<os>_<arch>[.exe] for linux/amd64, linux/arm64,
// linux/arm, darwin/amd64, darwin/arm64 and windows/amd64, and
// dist/go_plugin_build_manifest. The frontend is built by `npm run build`.
package main

import (
	"github.com/grafana/grafana-plugin-sdk-go/build"
	"github.com/magefile/mage/mg"
)

func init() {
	// The backend lives in backend/, not the SDK's default ./pkg; plugin.json
	// (executable name, id) is read from src/ and binaries go to dist/.
	_ = build.SetBeforeBuildCallback(func(cfg build.Config) (build.Config, error) {
		cfg.RootPackagePath = "./backend"
		cfg.PluginJSONPath = "src"
		cfg.OutputBinaryPath = "dist"
		return cfg, nil
	})
}

// Default builds the backend for every platform Grafana runs on.
var Default = BuildAll

// BuildAll builds the backend for every platform and writes the manifest.
func BuildAll() {
	b := build.Build{}
	mg.Deps(b.Linux, b.LinuxARM64, b.LinuxARM, b.Darwin, b.DarwinARM64, b.Windows)
	mg.Deps(b.GenerateManifestFile)
}

// Linux builds only linux/amd64 (quick local check).
func Linux() error { return build.Build{}.Linux() }

// Clean removes dist/.
func Clean() error { return build.Clean() }
