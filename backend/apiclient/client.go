// Package apiclient is the Grafana plugin's client of metergate serve: the
// Prometheus-compatible query API and the identity and perimeter listings.
// Every answer it returns has passed metergate's privacy gate on the
// server, with the audience of the token it holds; it reads nothing else.
package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors a caller may select with errors.Is.
var (
	// ErrUnreachable: no HTTP answer at all (DNS, connection, TLS, timeout).
	ErrUnreachable = errors.New("metergate is unreachable")
	// ErrTokenRefused: the server answered 401 to the token.
	ErrTokenRefused = errors.New("the token was refused by metergate")
	// ErrRefused: the privacy gate refused the query (403). The server
	// never says why: the reason is in its audit log.
	ErrRefused = errors.New("query refused by the privacy policy")
	// ErrNotFound: the server does not have the endpoint (an older metergate).
	ErrNotFound = errors.New("endpoint not found on metergate")
)

// SuppressedWarning is the warning metergate puts in an answer whose points
// were hidden because too few meters contributed (gate.ErrSuppressed).
const SuppressedWarning = "hidden to protect privacy: fewer than the required meters"

// APIError is an error answer of the server.
type APIError struct {
	Status  int
	Type    string
	Message string
	kind    error
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("metergate answered %d", e.Status)
	}
	return fmt.Sprintf("metergate answered %d: %s", e.Status, e.Message)
}

// Unwrap lets errors.Is select the kind of refusal.
func (e *APIError) Unwrap() error { return e.kind }

// Client calls one metergate server with one bearer token.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New checks the server URL and builds a client. hc carries timeouts, TLS
// and proxy settings (the SDK's httpclient builds it from Grafana's).
func New(baseURL, token string, hc *http.Client) (*Client, error) {
	if strings.TrimSpace(baseURL) == "" {
		return nil, errors.New("the metergate URL is not set")
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("the metergate URL %q is not valid: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the metergate URL %q must be http:// or https:// with a host", baseURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	return &Client{base: u, token: token, http: hc}, nil
}

// URL is the server's base URL.
func (c *Client) URL() string { return c.base.String() }

// Sample is one point of a series.
type Sample struct {
	T time.Time
	V float64
}

// Series is one labelled series of an answer.
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

// Result is a query's answer: its series (an instant vector is series of
// one sample, a scalar a series without labels) and the server's warnings.
type Result struct {
	Series   []Series
	Warnings []string
}

// Suppressed reports whether the server hid points to protect privacy.
func (r *Result) Suppressed() bool {
	for _, w := range r.Warnings {
		if strings.Contains(w, SuppressedWarning) {
			return true
		}
	}
	return false
}

// Query runs an instant query at ts.
func (c *Client) Query(ctx context.Context, q string, ts time.Time) (*Result, error) {
	form := url.Values{"query": {q}, "time": {formatTime(ts)}}
	return c.query(ctx, "/api/v1/query", form)
}

// QueryRange runs a range query.
func (c *Client) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) (*Result, error) {
	form := url.Values{"query": {q}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	return c.query(ctx, "/api/v1/query_range", form)
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

type envelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type promSeries struct {
	Metric map[string]string   `json:"metric"`
	Value  []json.RawMessage   `json:"value"`
	Values [][]json.RawMessage `json:"values"`
}

func (c *Client) query(ctx context.Context, path string, form url.Values) (*Result, error) {
	// POST keeps long queries out of URLs and access logs; metergate refuses
	// a parameter given twice, so everything goes in the body only.
	env, err := c.do(ctx, http.MethodPost, path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	var d queryData
	if err := json.Unmarshal(env.Data, &d); err != nil {
		return nil, fmt.Errorf("decoding the answer of %s: %w", path, err)
	}
	res := &Result{Warnings: env.Warnings}
	switch d.ResultType {
	case "scalar":
		var v []json.RawMessage
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return nil, fmt.Errorf("decoding a scalar: %w", err)
		}
		s, err := sample(v)
		if err != nil {
			return nil, err
		}
		res.Series = []Series{{Labels: map[string]string{}, Samples: []Sample{s}}}
	case "vector", "matrix":
		var ss []promSeries
		if err := json.Unmarshal(d.Result, &ss); err != nil {
			return nil, fmt.Errorf("decoding a %s: %w", d.ResultType, err)
		}
		for _, ps := range ss {
			out := Series{Labels: ps.Metric}
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			points := ps.Values
			if d.ResultType == "vector" {
				points = [][]json.RawMessage{ps.Value}
			}
			for _, p := range points {
				s, err := sample(p)
				if err != nil {
					return nil, err
				}
				out.Samples = append(out.Samples, s)
			}
			res.Series = append(res.Series, out)
		}
	default:
		return nil, fmt.Errorf("unexpected result type %q from %s", d.ResultType, path)
	}
	return res, nil
}

// sample decodes a Prometheus [ts, "value"] pair.
func sample(p []json.RawMessage) (Sample, error) {
	if len(p) != 2 {
		return Sample{}, fmt.Errorf("a sample has %d elements, not 2", len(p))
	}
	var ts float64
	var vs string
	if err := json.Unmarshal(p[0], &ts); err != nil {
		return Sample{}, fmt.Errorf("decoding a timestamp: %w", err)
	}
	if err := json.Unmarshal(p[1], &vs); err != nil {
		return Sample{}, fmt.Errorf("decoding a value: %w", err)
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("decoding value %q: %w", vs, err)
	}
	return Sample{T: time.UnixMilli(int64(ts*1000 + 0.5)).UTC(), V: v}, nil
}

// do sends a request and decodes the API envelope, turning error answers
// into APIError of the right kind.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*envelope, error) {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building request to %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer of %s: %w", ErrUnreachable, path, err)
	}
	var env envelope
	jsonErr := json.Unmarshal(b, &env)
	if resp.StatusCode == http.StatusOK && jsonErr == nil && env.Status == "success" {
		return &env, nil
	}
	e := &APIError{Status: resp.StatusCode, Type: env.ErrorType, Message: env.Error}
	if jsonErr != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 300 {
			e.Message = e.Message[:300] + "…"
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		e.kind = ErrTokenRefused
	case http.StatusForbidden:
		e.kind = ErrRefused
	case http.StatusNotFound:
		e.kind = ErrNotFound
	}
	return nil, e
}

// Identity is what the token lets its holder do (GET /api/v1/whoami).
type Identity struct {
	Name     string   `json:"name"`
	Audience string   `json:"audience"`
	UseCases []string `json:"useCases"`
	Write    bool     `json:"write"`
}

// Whoami returns the identity of the client's token.
func (c *Client) Whoami(ctx context.Context) (*Identity, error) {
	env, err := c.do(ctx, http.MethodGet, "/api/v1/whoami", nil)
	if err != nil {
		return nil, err
	}
	var id Identity
	if err := json.Unmarshal(env.Data, &id); err != nil {
		return nil, fmt.Errorf("decoding whoami: %w", err)
	}
	return &id, nil
}

// Ready checks that the server answers /-/ready (no token needed).
func (c *Client) Ready(ctx context.Context) error {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/-/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building readiness request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("metergate at %s is not ready (%d): %s", c.base.Redacted(), resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// CloseIdleConnections releases the client's idle connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }
