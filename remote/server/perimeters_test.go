package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/gate/gatetest"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// The perimeter listing tells each caller which forms it may ask of each
// perimeter: the policy's for its audience, narrowed by registry forms.
func TestPerimeterForms(t *testing.T) {
	d := gatetest.Build(t)
	srv := st.Start(t, st.Options{Registry: d.WithPerimeters(t, d.FormsPerimeters())})

	forms := func(token string) map[string][]string {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/perimeters", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		var body struct {
			Data []struct {
				Name  string   `json:"name"`
				Forms []string `json:"forms"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(b, &body), string(b))
		out := map[string][]string{}
		for _, p := range body.Data {
			out[p.Name] = p.Forms
		}
		return out
	}
	pub := forms(st.PublicToken)
	assert.Equal(t, []string{"sum"}, pub["confluence"])
	assert.Equal(t, []string{"sum"}, pub["cluster-k01"])
	assert.Equal(t, []string{"quartile"}, pub["west"])
	assert.Equal(t, []string{"sum", "quartile"}, pub["producers"])
	assert.NotContains(t, pub, "building-b1")

	assert.Equal(t, []string{"sum", "quartile", "individual"}, forms(st.ConsentedToken)["uc3-b1"], "consented daily consumption")
}
