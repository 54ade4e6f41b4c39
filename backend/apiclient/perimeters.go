package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/metergate/metergate/pkg/perimeterapi"
)

// The types of GET /api/v1/perimeters, as the server writes them.
type (
	Perimeter = perimeterapi.Perimeter
	Building  = perimeterapi.Building
	Cluster   = perimeterapi.Cluster
	Station   = perimeterapi.Station
)

// Perimeters lists the perimeters the token may query.
func (c *Client) Perimeters(ctx context.Context) ([]Perimeter, error) {
	env, err := c.do(ctx, http.MethodGet, perimeterapi.Path, nil)
	if err != nil {
		return nil, err
	}
	var ps []Perimeter
	if err := json.Unmarshal(env.Data, &ps); err != nil {
		return nil, fmt.Errorf("decoding perimeters: %w", err)
	}
	return ps, nil
}
