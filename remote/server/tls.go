package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// serverTLS is the listener's TLS state: the configuration and the
// certificate in force, which Reload replaces (certificates are renewed
// without a restart, like the callers).
type serverTLS struct {
	config   *tls.Config
	cert     atomic.Pointer[tls.Certificate]
	certFile string
	keyFile  string
}

// setupTLS reads http.tls; nil when the listener serves plain HTTP.
func (s *Server) setupTLS() (*serverTLS, error) {
	t := s.cfg.HTTP.TLS
	if !t.Enabled() {
		return nil, nil
	}
	st := &serverTLS{certFile: s.cfg.Path(t.CertFile), keyFile: s.cfg.Path(t.KeyFile)}
	if err := st.reload(); err != nil {
		return nil, err
	}
	st.config = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return st.cert.Load(), nil
		},
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(s.cfg.Path(t.ClientCAFile))
		if err != nil {
			return nil, fmt.Errorf("http.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("http.tls.client_ca_file: no PEM certificate in it")
		}
		st.config.ClientCAs = pool
		st.config.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			st.config.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return st, nil
}

// reload reads the certificate and key again; on error the old pair stays.
func (st *serverTLS) reload() error {
	if st == nil {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(st.certFile, st.keyFile)
	if err != nil {
		return fmt.Errorf("http.tls: loading the certificate: %w", err)
	}
	st.cert.Store(&pair)
	return nil
}

// Scheme is "https" when the listener serves TLS, else "http".
func (s *Server) Scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}
