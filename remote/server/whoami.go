package server

import (
	"encoding/json"
	"net/http"

	"github.com/metergate/metergate/pkg/registry"
)

// whoami is the answer of GET /api/v1/whoami: what the bearer token of the
// request lets its holder do. Grafana's data source shows it in its health
// check, so that an administrator sees which audience a token really has.
type whoami struct {
	Name     string             `json:"name"`
	Audience registry.Audience  `json:"audience"`
	UseCases []registry.UseCase `json:"useCases"`
	Write    bool               `json:"write"`
}

// serveWhoami answers with the caller's own identity; it reveals nothing a
// token holder does not already know, and nothing about meters.
func serveWhoami(w http.ResponseWriter, r *http.Request) {
	c := CallerOf(r)
	if c == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="metergate"`)
		writeAPIJSON(w, http.StatusUnauthorized, map[string]any{"status": "error", "errorType": "unauthorized", "error": "a bearer token is required"})
		return
	}
	uc := c.UseCases
	if uc == nil {
		uc = []registry.UseCase{}
	}
	writeAPIJSON(w, http.StatusOK, map[string]any{"status": "success", "data": whoami{Name: c.Name, Audience: c.Audience, UseCases: uc, Write: c.Write}})
}

func writeAPIJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding the answer failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
