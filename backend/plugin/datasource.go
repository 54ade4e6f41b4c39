// Package plugin is metergate's Grafana data source: use-case queries and
// PromQL evaluated by metergate serve through its privacy gate, with the
// audience of the data source's token, turned into Grafana data frames.
//
// The plugin is only a network client of the server: it opens no file and
// no storage, and it learns nothing the token could not ask for itself.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/httpclient"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"

	"github.com/metergate/metergate/backend/apiclient"
)

// ID is the plugin's id, as in src/plugin.json.
const ID = "metergate-metergate-datasource"

// Settings are the data source's settings: the server URL (Grafana's URL
// field, or jsonData.url) and the bearer token (secureJsonData.token,
// encrypted by Grafana and only decrypted for the plugin).
type Settings struct {
	URL     string `json:"url"`
	Timeout int    `json:"timeoutSeconds"`
	token   string
}

func loadSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	var st Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &st); err != nil {
			return st, fmt.Errorf("reading the data source's jsonData: %w", err)
		}
	}
	if s.URL != "" {
		st.URL = s.URL
	}
	st.URL = strings.TrimSpace(st.URL)
	st.token = strings.TrimSpace(s.DecryptedSecureJSONData["token"])
	if st.Timeout <= 0 {
		st.Timeout = 120
	}
	return st, nil
}

// Datasource is one configured metergate data source.
type Datasource struct {
	client *apiclient.Client
	// cfgErr is a configuration error: reported by CheckHealth and by
	// every query, rather than failing the instance, so that the
	// administrator reads what is wrong.
	cfgErr    error
	resources backend.CallResourceHandler
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory given to datasource.Manage: the
// SDK's instance manager calls it again when the settings change.
func NewDatasource(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	d := &Datasource{}
	d.resources = httpadapter.New(d.routes())
	st, err := loadSettings(s)
	if err != nil {
		d.cfgErr = err
		return d, nil
	}
	opts, err := s.HTTPClientOptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("http client options: %w", err)
	}
	opts.Timeouts.Timeout = time.Duration(st.Timeout) * time.Second
	hc, err := httpclient.New(opts)
	if err != nil {
		return nil, fmt.Errorf("building the http client: %w", err)
	}
	// An empty token is allowed: a server may answer anonymous readers as
	// the public audience. CheckHealth says which audience applies.
	d.client, d.cfgErr = apiclient.New(st.URL, st.token, hc)
	return d, nil
}

// Dispose is called when the settings change and the instance is replaced.
func (d *Datasource) Dispose() {
	if d.client != nil {
		d.client.CloseIdleConnections()
	}
}

// CallResource serves the plugin's resources (see routes).
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	return d.resources.CallResource(ctx, req, sender)
}

// ready returns the configuration error every call answers, if any.
func (d *Datasource) ready() error {
	if d.cfgErr != nil {
		return d.cfgErr
	}
	if d.client == nil {
		return errors.New("the data source is not configured")
	}
	return nil
}

// httpStatus maps a client error to the status of a query's answer.
func httpStatus(err error) backend.Status {
	switch {
	case errors.Is(err, apiclient.ErrRefused):
		return backend.StatusForbidden
	case errors.Is(err, apiclient.ErrTokenRefused):
		return backend.StatusUnauthorized
	case errors.Is(err, apiclient.ErrUnreachable):
		return backend.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded):
		return backend.StatusTimeout
	}
	var ae *apiclient.APIError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
		return backend.StatusBadRequest
	}
	return backend.StatusInternal
}
