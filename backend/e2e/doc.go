// Package e2e tests the Grafana plugin as Grafana runs it: the built
// binary launched over hashicorp/go-plugin with the SDK's handshake, against
// a real metergate server filled through remote-write; and the checks of
// Grafana's plugin validator on the built plugin.
package e2e
