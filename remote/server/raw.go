package server

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/metergate/metergate/pkg/config"
	"github.com/metergate/metergate/pkg/registry"
	"github.com/metergate/metergate/remote/query"
)

// rawEvaluator answers operators only, with the plain PromQL engine: the
// door stays shut to everyone else unless the privacy gate stands in front.
type rawEvaluator struct {
	engine    *promql.Engine
	queryable storage.Queryable
}

func (e *rawEvaluator) Query(ctx context.Context, c *config.Caller, q string, ts time.Time) (query.Result, error) {
	if c.Audience != registry.Operator {
		return query.Result{}, query.ErrRefused
	}
	qry, err := e.engine.NewInstantQuery(ctx, e.queryable, nil, q, ts)
	if err != nil {
		return query.Result{}, err
	}
	return exec(ctx, qry)
}

func (e *rawEvaluator) QueryRange(ctx context.Context, c *config.Caller, q string, start, end time.Time, step time.Duration) (query.Result, error) {
	if c.Audience != registry.Operator {
		return query.Result{}, query.ErrRefused
	}
	qry, err := e.engine.NewRangeQuery(ctx, e.queryable, nil, q, start, end, step)
	if err != nil {
		return query.Result{}, err
	}
	return exec(ctx, qry)
}

func exec(ctx context.Context, q promql.Query) (query.Result, error) {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return query.Result{}, fmt.Errorf("evaluating %s: %w", q.String(), res.Err)
	}
	warnings, _ := res.Warnings.AsStrings(q.String(), 10, 10)
	return query.Result{Value: res.Value, Warnings: warnings}, nil
}
