package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/prometheus/common/model"

	"github.com/metergate/metergate/backend/apiclient"
)

// QueryModel is a panel's query as the query editor saves it (the JSON of
// a DataQuery). The use case is DataQuery.QueryType.
type QueryModel struct {
	Perimeter string `json:"perimeter,omitempty"`
	Metric    string `json:"metric,omitempty"`
	// Step is a Prometheus duration: 1d or 7d for daily figures, 10m or
	// 30m for curves, anything for PromQL. Empty: the metric's own step
	// (for PromQL, Grafana's interval).
	Step string `json:"step,omitempty"`
	// RMP narrows consented individual values to one meter.
	RMP string `json:"rmp,omitempty"`
	// Expr and Instant are the PromQL query type's.
	Expr    string `json:"expr,omitempty"`
	Instant bool   `json:"instant,omitempty"`
}

// QueryData evaluates every query of the request through the server's
// gate. A query's failure is its own response; the others still answer.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

// query answers one query.
func (d *Datasource) query(ctx context.Context, q backend.DataQuery) backend.DataResponse {
	if err := d.ready(); err != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, err.Error())
	}
	var qm QueryModel
	if len(q.JSON) > 0 {
		if err := json.Unmarshal(q.JSON, &qm); err != nil {
			return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourcePlugin, "reading the query: "+err.Error())
		}
	}
	var (
		frames data.Frames
		what   string
		err    error
	)
	if q.QueryType == TypePromQL {
		what = "this PromQL query"
		frames, err = d.promQL(ctx, q, qm)
	} else {
		frames, what, err = d.useCase(ctx, q, qm)
	}
	if err != nil {
		return errorResponse(err, what)
	}
	return backend.DataResponse{Frames: frames}
}

// errorResponse turns a failure into a response Grafana shows above the
// panel. A refusal says plainly that the privacy policy refused, never
// showing an empty panel that could be read as zero.
func errorResponse(err error, what string) backend.DataResponse {
	var bad *badQuery
	switch {
	case errors.As(err, &bad):
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourcePlugin, err.Error())
	case errors.Is(err, apiclient.ErrRefused):
		msg := fmt.Sprintf("%s: this data source's token may not read %s", apiclient.ErrRefused, what)
		f := data.NewFrame("refused")
		f.SetMeta(&data.FrameMeta{Notices: []data.Notice{{Severity: data.NoticeSeverityError, Text: msg}}})
		return backend.DataResponse{Error: errors.New(msg), Status: backend.StatusForbidden,
			ErrorSource: backend.ErrorSourceDownstream, Frames: data.Frames{f}}
	}
	return backend.DataResponse{Error: err, Status: httpStatus(err), ErrorSource: backend.ErrorSourceDownstream}
}

// badQuery is a query the plugin cannot even send.
type badQuery struct{ msg string }

func (e *badQuery) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badQuery{fmt.Sprintf(format, args...)} }

// parseStep reads a Prometheus duration (1d, 30m) or seconds.
func parseStep(s string, def time.Duration) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badf("step %q is not a positive duration such as 1d, 30m or 10m", s)
	}
	return time.Duration(d), nil
}

// promQL runs an analyst's query, as typed, through the gate.
func (d *Datasource) promQL(ctx context.Context, q backend.DataQuery, qm QueryModel) (data.Frames, error) {
	expr := strings.TrimSpace(qm.Expr)
	if expr == "" {
		return nil, badf("the PromQL query is empty")
	}
	if qm.Instant {
		res, err := d.client.Query(ctx, expr, q.TimeRange.To)
		if err != nil {
			return nil, err
		}
		return seriesFrames(res, expr, promUnit(expr), ""), nil
	}
	step, err := parseStep(qm.Step, defaultStep(q))
	if err != nil {
		return nil, err
	}
	res, err := d.client.QueryRange(ctx, expr, q.TimeRange.From, q.TimeRange.To, step)
	if err != nil {
		return nil, err
	}
	return seriesFrames(res, expr, promUnit(expr), ""), nil
}

// maxPoints is metergate's (and Prometheus's) limit of points per series.
const maxPoints = 11000

// defaultStep is Grafana's interval, widened so that the range fits in the
// panel's MaxDataPoints and the server's limit, in whole seconds.
func defaultStep(q backend.DataQuery) time.Duration {
	step := max(q.Interval, time.Second)
	points := q.MaxDataPoints
	if points <= 0 || points > maxPoints {
		points = maxPoints
	}
	if span := q.TimeRange.To.Sub(q.TimeRange.From); span/time.Duration(points) > step {
		step = span / time.Duration(points)
	}
	if r := step % time.Second; r != 0 {
		step += time.Second - r
	}
	return step
}

// promUnit guesses the unit of a PromQL answer from the metric names in it,
// following the catalogue's suffixes.
func promUnit(expr string) string {
	switch {
	case strings.Contains(expr, "_wh"):
		return unitWh
	case strings.Contains(expr, "_watts"):
		return unitW
	case strings.Contains(expr, "_seconds"):
		return "s"
	}
	return ""
}

// useCase runs one of the use cases' figures.
func (d *Datasource) useCase(ctx context.Context, q backend.DataQuery, qm QueryModel) (data.Frames, string, error) {
	m, err := lookupMetric(q.QueryType, qm.Metric)
	if err != nil {
		return nil, "", badf("%s", err.Error())
	}
	perimeter := strings.TrimSpace(qm.Perimeter)
	if perimeter == "" {
		perimeter = m.Perimeter
	}
	if perimeter == "" {
		return nil, "", badf("%s needs a perimeter", m.Title)
	}
	what := fmt.Sprintf("%s of perimeter %s (%s)", strings.ToLower(m.Title[:1])+m.Title[1:], perimeter, m.UseCase)
	if qm.RMP != "" && !m.Consent {
		return nil, what, badf("a meter (rmp) can only be chosen for consented individual figures")
	}
	step, err := parseStep(qm.Step, m.Step)
	if err != nil {
		return nil, what, err
	}
	if m.Shape != curve && step%day != 0 {
		return nil, what, badf("daily figures need a step of whole days (1d, 7d), not %s", model.Duration(step))
	}
	if m.Shape == monthly {
		step = day
	}
	var info *apiclient.Perimeter
	if m.Post != postNone || strings.Contains(m.ID, "per_inhabitant") {
		if info, err = d.perimeter(ctx, perimeter); err != nil {
			return nil, what, err
		}
	}
	inhabitants := 0
	if info != nil {
		inhabitants = info.Inhabitants
	}
	expr, err := m.Expr(perimeter, qm.RMP, inhabitants)
	if err != nil {
		return nil, what, badf("%s", err.Error())
	}
	res, err := d.client.QueryRange(ctx, expr, q.TimeRange.From, q.TimeRange.To, step)
	if err != nil {
		return nil, what, err
	}
	var frames data.Frames
	switch m.Shape {
	case curve:
		frames = seriesFrames(res, expr, m.Unit, curveName(m))
	case daily:
		frames = dailyFrames(res, expr, m, perimeter, info, q.TimeRange, step)
	case monthly:
		frames, err = monthlyFrames(res, expr, m, perimeter, info, q.TimeRange)
	}
	return frames, what, err
}

// perimeter returns what the server says of a perimeter visible to the token.
func (d *Datasource) perimeter(ctx context.Context, name string) (*apiclient.Perimeter, error) {
	ps, err := d.client.Perimeters(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing perimeters: %w", err)
	}
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i], nil
		}
	}
	// Not listed means not addressable: the gate would refuse the query.
	return nil, fmt.Errorf("perimeter %s is not visible to this token: %w", name, apiclient.ErrRefused)
}

func curveName(m *metric) string {
	if m.UseCase == TypeUC5 {
		return "charging station meter"
	}
	return "household"
}
