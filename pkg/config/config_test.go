package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const token = "a-token-of-sixteen-or-more"

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		name    string
		callers string
		wantErr string
	}{
		{"plain token", "  - {name: a, token: " + token + ", write: true}", ""},
		{"hashed token", "  - {name: a, token_sha256: " + HashToken(token) + ", write: true}", ""},
		{"hash in capitals", "  - {name: a, token_sha256: " + strings.ToUpper(HashToken(token)) + ", write: true}", ""},
		{"both", "  - {name: a, token: " + token + ", token_sha256: " + HashToken(token) + ", write: true}", "not both"},
		{"neither", "  - {name: a, write: true}", "has no token"},
		{"short token", "  - {name: a, token: short, write: true}", "at least 16"},
		{"hash not hex", "  - {name: a, token_sha256: " + strings.Repeat("z", 64) + ", write: true}", "64 hexadecimal"},
		{"hash too short", "  - {name: a, token_sha256: abcd, write: true}", "64 hexadecimal"},
		{"same token, one hashed", "  - {name: a, token: " + token + ", write: true}\n  - {name: b, token_sha256: " + HashToken(token) + ", write: true}", "already given"},
		{"expires", "  - {name: a, token: " + token + ", write: true, expires: 2027-01-01T00:00:00Z}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte("callers:\n" + tc.callers + "\n"))
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.wantErr)
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	c, err := Parse([]byte(`callers:
  - {name: plain, token: plain-token-0123456789, write: true}
  - {name: hashed, token_sha256: ` + HashToken("hashed-token-0123456789") + `, audience: public}
  - {name: expiring, token: expiring-token-0123456789, audience: public, expires: 2027-01-01T00:00:00Z}
`))
	require.NoError(t, err)
	before := time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	after := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		token string
		at    time.Time
		want  string
	}{
		{"plain-token-0123456789", before, "plain"},
		{"hashed-token-0123456789", before, "hashed"},
		{HashToken("hashed-token-0123456789"), before, ""}, // the digest is not the token
		{"expiring-token-0123456789", before, "expiring"},
		{"expiring-token-0123456789", after, ""},
		{"", before, ""},
		{"plain-token-012345678", before, ""},
	} {
		got, ok := c.IdentifyAt(tc.token, tc.at)
		if tc.want == "" {
			require.False(t, ok, tc.token)
			require.Nil(t, got)
			continue
		}
		require.True(t, ok, tc.token)
		require.Equal(t, tc.want, got.Name)
	}
}

func TestParseLimits(t *testing.T) {
	c, err := Parse([]byte("http: {read_header_timeout: 3s, rate_limit: 5, burst: 10}\nquery: {max_concurrent: 4}\nwrite: {max_samples_per_request: 100, max_new_series_per_day: 7}\n"))
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, time.Duration(c.HTTP.ReadHeaderTimeout))
	require.Equal(t, 2*time.Minute, time.Duration(c.HTTP.ReadTimeout), "defaults stay for the keys left out")
	require.Equal(t, 4, c.Query.MaxConcurrent)
	require.Equal(t, 100, c.Write.MaxSamplesPerRequest)
	require.Equal(t, 7, c.Write.MaxNewSeriesPerDay)
	for _, bad := range []string{
		"http: {rate_limit: 5}",
		"http: {rate_limit: -1, burst: 1}",
		"write: {max_samples_per_request: -1}",
		"query: {max_concurrent: -2}",
		"http: {read_timeout: -1s}",
		"http: {unknown: 1}",
	} {
		_, err := Parse([]byte(bad))
		require.Error(t, err, bad)
	}
}

// FuzzParse: any bytes give a configuration or an error, never a panic; a
// configuration accepted is valid and identifies no one by the empty token.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"listen: 127.0.0.1:0\n",
		"callers:\n  - {name: a, token: " + token + ", write: true}\n",
		"callers:\n  - {name: a, token_sha256: " + HashToken(token) + ", audience: public, expires: 2027-01-01T00:00:00Z}\n",
		"callers:\n  - {name: p, token: " + token + ", audience: consented, use_cases: [uc3]}\n",
		"http: {rate_limit: 1.5, burst: 2}\nwrite: {max_samples_per_request: 10}\n",
		"storage: {retention: 0s}\n",
		"anonymous: public\n",
		"callers: [{name: [1,2]}]\n",
		"&a [*a]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		require.NoError(t, c.Validate(), "Parse returned a configuration Validate refuses")
		_, ok := c.Identify("")
		require.False(t, ok, "the empty token identifies someone")
		for _, cl := range c.Callers {
			if cl.Token != "" && (cl.Expires.IsZero() || time.Now().Before(cl.Expires)) {
				got, ok := c.Identify(cl.Token)
				require.True(t, ok)
				require.Equal(t, cl.Name, got.Name)
			}
		}
	})
}

func TestParseTLS(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		ok   bool
	}{
		{"http: {tls: {cert_file: c.pem, key_file: k.pem}}", true},
		{"http: {tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, require_client_cert: true}}", true},
		{"http: {tls: {cert_file: c.pem}}", false},
		{"http: {tls: {client_ca_file: ca.pem}}", false},
		{"http: {tls: {cert_file: c.pem, key_file: k.pem, require_client_cert: true}}", false},
	} {
		_, err := Parse([]byte(tc.yaml))
		if tc.ok {
			require.NoError(t, err, tc.yaml)
		} else {
			require.Error(t, err, tc.yaml)
		}
	}
}
