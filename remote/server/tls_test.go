package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	rwsender "github.com/metergate/metergate/remote/sender"
	"github.com/metergate/metergate/remote/server"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// issue writes a certificate (and key) signed by parent, or self-signed.
func issue(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return cert, key
}

func tmpl(serial int64, cn string, ca bool, usage x509.ExtKeyUsage) *x509.Certificate {
	c := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if ca {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage |= x509.KeyUsageCertSign
		c.ExtKeyUsage = nil
	} else {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	return c
}

// startTLS runs a server with http.tls from dir's certificates.
func startTLS(t *testing.T, dir string, edit func(*config.TLS)) string {
	t.Helper()
	require.NoError(t, registry.Save(filepath.Join(dir, "registry"), &registry.Registry{}))
	cfg := config.Defaults()
	cfg.Listen, cfg.Callers, cfg.RuleFiles = "127.0.0.1:0", st.Callers, nil
	cfg.HTTP.TLS = config.TLS{CertFile: "server.pem", KeyFile: "server-key.pem"}
	edit(&cfg.HTTP.TLS)
	b, err := yaml.Marshal(&cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, "metergate.yml")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	loaded, err := config.Load(path)
	require.NoError(t, err)
	srv, err := server.New(loaded, server.Options{})
	require.NoError(t, err)
	addr, err := srv.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Equal(t, "https", srv.Scheme())
	return fmt.Sprintf("https://%s", addr)
}

func client(t *testing.T, dir string, withCA bool, cert string) *http.Client {
	t.Helper()
	cfg := &tls.Config{}
	if withCA {
		b, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
		require.NoError(t, err)
		cfg.RootCAs = x509.NewCertPool()
		require.True(t, cfg.RootCAs.AppendCertsFromPEM(b))
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, cert+".pem"), filepath.Join(dir, cert+"-key.pem"))
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := issue(t, dir, "ca", tmpl(1, "metergate test CA", true, 0), nil, nil)
	issue(t, dir, "server", tmpl(2, "metergate", false, x509.ExtKeyUsageServerAuth), ca, caKey)
	issue(t, dir, "headend", tmpl(3, "headend", false, x509.ExtKeyUsageClientAuth), ca, caKey)

	get := func(c *http.Client, url string) (int, error) {
		resp, err := c.Get(url + "/-/ready")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	t.Run("server certificate", func(t *testing.T) {
		url := startTLS(t, dir, func(*config.TLS) {})
		code, err := get(client(t, dir, true, ""), url)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		_, err = get(client(t, dir, false, ""), url)
		require.ErrorContains(t, err, "certificate", "a client that does not trust the CA must fail")

		// The simulator's sender verifies with its CA option.
		s, err := rwsender.New(rwsender.Config{URL: url + "/api/v1/write", Token: st.SenderToken, CAFile: filepath.Join(dir, "ca.pem"), MaxRetries: 1})
		require.NoError(t, err)
		now := time.Now()
		require.NoError(t, s.Write(context.Background(), []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "linky_index_wh"}, {Name: "rmp", Value: prm}},
			Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 1}},
		}}))
		require.NoError(t, s.Close(context.Background()))
		require.EqualValues(t, 1, s.Stats().SamplesSent)
	})
	t.Run("client certificates required", func(t *testing.T) {
		url := startTLS(t, dir, func(c *config.TLS) { c.ClientCAFile, c.RequireClientCert = "ca.pem", true })
		_, err := get(client(t, dir, true, ""), url)
		require.Error(t, err, "a client without a certificate must be refused")
		code, err := get(client(t, dir, true, "headend"), url)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	})
}
