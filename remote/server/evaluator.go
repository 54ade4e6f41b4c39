package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/gate"
	"github.com/metergate/metergate/remote/query"
)

// gateEvaluator puts the privacy gate behind the query API: every query of
// every audience, the operator's included, goes through it.
type gateEvaluator struct {
	gate *gate.Gate
	hits *prometheus.CounterVec // metergate_limit_hits_total
}

func (e *gateEvaluator) Query(ctx context.Context, c *config.Caller, q string, ts time.Time) (query.Result, error) {
	return e.exec(ctx, c, gate.Request{Query: q, Start: ts, End: ts})
}

func (e *gateEvaluator) QueryRange(ctx context.Context, c *config.Caller, q string, start, end time.Time, step time.Duration) (query.Result, error) {
	return e.exec(ctx, c, gate.Request{Query: q, Start: start, End: end, Step: step})
}

func (e *gateEvaluator) exec(ctx context.Context, c *config.Caller, req gate.Request) (query.Result, error) {
	res, err := e.gate.Exec(ctx, c, req)
	countQueryLimit(e.hits, err)
	// The engine's limits answer as Prometheus does: 422 past max_samples
	// (do not retry), 503 past the timeout.
	var tooMany promql.ErrTooManySamples
	var timeout promql.ErrQueryTimeout
	if errors.As(err, &tooMany) {
		return query.Result{}, tooMany
	}
	if errors.As(err, &timeout) {
		return query.Result{}, timeout
	}
	if errors.Is(err, gate.ErrUnavailable) {
		return query.Result{}, fmt.Errorf("%w: %w", query.ErrUnavailable, err)
	}
	if err != nil {
		return query.Result{}, err
	}
	warnings, _ := res.Annotations.AsStrings(req.Query, 10, 10)
	return query.Result{Value: res.Value, Warnings: warnings}, nil
}
