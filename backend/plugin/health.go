package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/metergate/metergate/backend/apiclient"
)

// CheckHealth tells the administrator, in one message, what is wrong or
// what the token is: the server's reachability, the token's acceptance,
// then its audience, use cases and the perimeters it may query.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	fail := func(format string, args ...any) (*backend.CheckHealthResult, error) {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: fmt.Sprintf(format, args...)}, nil
	}
	if err := d.ready(); err != nil {
		return fail("Configuration: %v", err)
	}
	if err := d.client.Ready(ctx); err != nil {
		if errors.Is(err, apiclient.ErrUnreachable) {
			return fail("Cannot reach metergate at %s (%v). Check the URL, and that metergate serve runs and is reachable from the Grafana server.", d.client.URL(), err)
		}
		return fail("%v", err)
	}
	id, err := d.client.Whoami(ctx)
	switch {
	case errors.Is(err, apiclient.ErrTokenRefused):
		return fail("metergate at %s refused the token (401): it is not one of the server's callers. Paste a reader's token from metergate.yml in the data source's Token field.", d.client.URL())
	case errors.Is(err, apiclient.ErrNotFound):
		return fail("metergate at %s has no /api/v1/whoami: the server is older than this plugin; upgrade metergate.", d.client.URL())
	case err != nil:
		return fail("Asking metergate who the token is: %v", err)
	}
	if id.Audience == "" {
		return fail("The token of %q is accepted but can only write (remote-write sender): it has no reading audience. Use a reader's token.", id.Name)
	}
	msg := fmt.Sprintf("Connected to metergate at %s as %q: audience %s", d.client.URL(), id.Name, id.Audience)
	if len(id.UseCases) > 0 {
		msg += ", use cases " + strings.Join(id.UseCases, ", ")
	}
	if id.Audience == "operator" {
		return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
			Message: msg + ". Operator queries are raw PromQL on the raw storage (use the PromQL query type), and every one is audited."}, nil
	}
	ps, err := d.client.Perimeters(ctx)
	if err != nil {
		return fail("%s, but listing its perimeters failed: %v", msg, err)
	}
	if len(ps) == 0 {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: msg + ", but it may query no perimeter: the registry has none for this audience and these use cases."}, nil
	}
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if len(names) > 8 {
		names = append(names[:8], fmt.Sprintf("and %d more", len(ps)-8))
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
		Message: fmt.Sprintf("%s; %d perimeters: %s.", msg, len(ps), strings.Join(names, ", "))}, nil
}
