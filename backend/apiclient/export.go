package apiclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Export opens the server's CSV export of a use case
// (GET /api/v1/exports/{useCase}.csv, evaluated through the gate with the
// client's token). The caller streams and closes the body.
func (c *Client) Export(ctx context.Context, useCase string, params url.Values) (io.ReadCloser, http.Header, error) {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/api/v1/exports/" + url.PathEscape(useCase) + ".csv"
	u.RawQuery = params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("building export request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base.Redacted(), err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, resp.Header, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		e.kind = ErrTokenRefused
	case http.StatusForbidden:
		e.kind = ErrRefused
	case http.StatusNotFound:
		e.kind = ErrNotFound
	}
	return nil, nil, e
}
