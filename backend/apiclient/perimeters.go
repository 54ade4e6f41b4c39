package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Perimeter is a registered perimeter the token's audience may address
// (GET /api/v1/perimeters), with the registry's public facts about it.
type Perimeter struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	UseCase     string              `json:"useCase"`
	Audience    string              `json:"audience"`
	Flow        string              `json:"flow"`
	GroupBy     []string            `json:"groupBy"`
	Groups      map[string][]string `json:"groups"`
	// Inhabitants of the perimeter when the registry knows them (whole
	// clusters, buildings); 0 when it does not.
	Inhabitants int       `json:"inhabitants"`
	Building    *Building `json:"building,omitempty"`
	Clusters    []Cluster `json:"clusters,omitempty"`
	Stations    []Station `json:"stations,omitempty"`
}

// Building is a use-case building.
type Building struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	Kind               string  `json:"kind"`
	Households         int     `json:"households"`
	SurfaceM2          float64 `json:"surfaceM2"`
	Inhabitants        int     `json:"inhabitants"`
	TargetKWhPerM2Year float64 `json:"targetKWhPerM2Year"`
}

// Cluster is one of the district's clusters.
type Cluster struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Inhabitants int    `json:"inhabitants"`
}

// Station is an EV charging station.
type Station struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Operator string `json:"operator"`
}

// Perimeters lists the perimeters the token may query.
func (c *Client) Perimeters(ctx context.Context) ([]Perimeter, error) {
	env, err := c.do(ctx, http.MethodGet, "/api/v1/perimeters", nil)
	if err != nil {
		return nil, err
	}
	var ps []Perimeter
	if err := json.Unmarshal(env.Data, &ps); err != nil {
		return nil, fmt.Errorf("decoding perimeters: %w", err)
	}
	return ps, nil
}
