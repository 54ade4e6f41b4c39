package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/remote/server/servertest"
)

func TestWhoami(t *testing.T) {
	in := servertest.Start(t, servertest.Options{})
	for _, tc := range []struct {
		token    string
		code     int
		name     string
		audience string
		useCases []string
	}{
		{servertest.RestrictedToken, http.StatusOK, "partner", "restricted", []string{"uc1", "uc2"}},
		{servertest.ConsentedToken, http.StatusOK, "household-app", "consented", []string{"uc3", "uc5"}},
		{servertest.PublicToken, http.StatusOK, "opendata", "public", []string{}},
		{servertest.SenderToken, http.StatusOK, "headend", "", []string{}},
		{"", http.StatusUnauthorized, "", "", nil},
		{"wrong-token-0123456789", http.StatusUnauthorized, "", "", nil},
	} {
		var got struct {
			Data struct {
				Name     string   `json:"name"`
				Audience string   `json:"audience"`
				UseCases []string `json:"useCases"`
			} `json:"data"`
		}
		code := getJSON(t, in.URL+"/api/v1/whoami", tc.token, &got)
		require.Equal(t, tc.code, code, tc.token)
		if code == http.StatusOK {
			require.Equal(t, tc.name, got.Data.Name)
			require.Equal(t, tc.audience, got.Data.Audience)
			require.Equal(t, tc.useCases, got.Data.UseCases)
		}
	}
}

// getJSON calls url with a bearer token and decodes a 200 answer into v.
func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}
