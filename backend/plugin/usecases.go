package plugin

import (
	"fmt"
	"strings"
	"time"
)

// Query types (DataQuery.QueryType): the five use cases and PromQL.
const (
	TypeUC1    = "uc1"
	TypeUC2    = "uc2"
	TypeUC3    = "uc3"
	TypeUC4    = "uc4"
	TypeUC5    = "uc5"
	TypePromQL = "promql"
)

// shape is how a metric's answer is laid out in time.
type shape int

const (
	daily   shape = iota // one value per local day, stamped at the day's start
	monthly              // daily values summed per calendar month (UC1)
	curve                // load curve points, as the server stamps them
)

// post is the work done on the server's answer before it becomes frames.
type post int

const (
	postNone                 post = iota
	postPerClusterInhabitant      // divide each cluster's series by its inhabitants
	postTarget                    // add the building's regulatory target (UC1)
)

// metric is one selectable figure of a use case: the PromQL the gate allows
// for it and how its answer is presented.
type metric struct {
	UseCase   string
	ID        string
	Title     string
	Shape     shape
	Unit      string // Grafana unit id
	Step      time.Duration
	Perimeter string // default perimeter, if any
	// Expr builds the query for a perimeter (and an optional RMP for
	// consented individual values); inhabitants is the perimeter's.
	Expr func(perimeter, rmp string, inhabitants int) (string, error)
	Post post
	// Consent marks figures only the consented audience may read.
	Consent bool
}

func sel(metric, perimeter, rmp string) string {
	if rmp != "" {
		return fmt.Sprintf(`%s{perimeter=%q,rmp=%q}`, metric, perimeter, rmp)
	}
	return fmt.Sprintf(`%s{perimeter=%q}`, metric, perimeter)
}

func sum(m string) func(string, string, int) (string, error) {
	return func(p, _ string, _ int) (string, error) { return "sum(" + sel(m, p, "") + ")", nil }
}

func quantile(q, m string) func(string, string, int) (string, error) {
	return func(p, _ string, _ int) (string, error) { return "quantile(" + q + ", " + sel(m, p, "") + ")", nil }
}

func individual(m string) func(string, string, int) (string, error) {
	return func(p, rmp string, _ int) (string, error) { return sel(m, p, rmp), nil }
}

const (
	dailyCons  = "linky_consumption_daily_wh"
	dailyInj   = "linky_injection_daily_wh"
	dailyGen   = "producer_generation_daily_wh"
	curveCons  = "linky_load_curve_watts"
	curveEV    = "ev_station_charge_power_watts"
	day        = 24 * time.Hour
	unitWh     = "watth"
	unitW      = "watt"
	confluence = "confluence"
)

// metrics are the use cases' figures (POLICY.md, "The five use cases").
var metrics = []metric{
	{UseCase: TypeUC1, ID: "monthly_vs_target", Title: "Monthly consumption against the regulatory target", Shape: monthly,
		Unit: unitWh, Step: day, Expr: sum(dailyCons), Post: postTarget},
	{UseCase: TypeUC1, ID: "daily_sum", Title: "Daily consumption of the building", Shape: daily, Unit: unitWh, Step: day, Expr: sum(dailyCons)},

	{UseCase: TypeUC2, ID: "daily_sum", Title: "Daily consumption (sum)", Shape: daily, Unit: unitWh, Step: day, Expr: sum(dailyCons)},
	{UseCase: TypeUC2, ID: "daily_median", Title: "Daily consumption, median household", Shape: daily, Unit: unitWh, Step: day, Expr: quantile("0.5", dailyCons)},
	{UseCase: TypeUC2, ID: "daily_q1", Title: "Daily consumption, first quartile", Shape: daily, Unit: unitWh, Step: day, Expr: quantile("0.25", dailyCons)},
	{UseCase: TypeUC2, ID: "daily_q3", Title: "Daily consumption, third quartile", Shape: daily, Unit: unitWh, Step: day, Expr: quantile("0.75", dailyCons)},
	{UseCase: TypeUC2, ID: "load_curve", Title: "10-minute load curves of consenting households", Shape: curve, Unit: unitW,
		Step: 10 * time.Minute, Expr: individual(curveCons), Consent: true},

	{UseCase: TypeUC3, ID: "daily", Title: "Daily consumption of each consenting household", Shape: daily, Unit: unitWh, Step: day,
		Expr: individual(dailyCons), Consent: true},
	{UseCase: TypeUC3, ID: "daily_sum", Title: "Daily consumption of consenting households (sum)", Shape: daily, Unit: unitWh, Step: day,
		Expr: sum(dailyCons), Consent: true},
	{UseCase: TypeUC3, ID: "daily_median", Title: "Daily consumption of consenting households (median)", Shape: daily, Unit: unitWh, Step: day,
		Expr: quantile("0.5", dailyCons), Consent: true},

	{UseCase: TypeUC4, ID: "clusters", Title: "Daily consumption of each cluster", Shape: daily, Unit: unitWh, Step: day, Perimeter: confluence,
		Expr: func(p, _ string, _ int) (string, error) {
			return "sum by (cluster) (" + sel(dailyCons, p, "") + ")", nil
		}},
	{UseCase: TypeUC4, ID: "consumption", Title: "Daily consumption", Shape: daily, Unit: unitWh, Step: day, Perimeter: confluence, Expr: sum(dailyCons)},
	{UseCase: TypeUC4, ID: "injected", Title: "Daily production injected into the grid", Shape: daily, Unit: unitWh, Step: day, Perimeter: "producers",
		Expr: sum(dailyInj)},
	{UseCase: TypeUC4, ID: "self_consumed", Title: "Daily production self-consumed", Shape: daily, Unit: unitWh, Step: day, Perimeter: "producers",
		Expr: func(p, _ string, _ int) (string, error) {
			return "sum(" + sel(dailyGen, p, "") + ") - sum(" + sel(dailyInj, p, "") + ")", nil
		}},
	{UseCase: TypeUC4, ID: "per_inhabitant", Title: "Daily consumption per inhabitant", Shape: daily, Unit: unitWh, Step: day, Perimeter: confluence,
		Expr: func(p, _ string, inhabitants int) (string, error) {
			if inhabitants <= 0 {
				return "", fmt.Errorf("the registry gives no inhabitants for perimeter %s", p)
			}
			return fmt.Sprintf("sum(%s) / %d", sel(dailyCons, p, ""), inhabitants), nil
		}},
	{UseCase: TypeUC4, ID: "clusters_per_inhabitant", Title: "Daily consumption per inhabitant of each cluster", Shape: daily, Unit: unitWh, Step: day,
		Perimeter: confluence, Post: postPerClusterInhabitant,
		Expr: func(p, _ string, _ int) (string, error) {
			return "sum by (cluster) (" + sel(dailyCons, p, "") + ")", nil
		}},

	{UseCase: TypeUC5, ID: "charge_curves", Title: "30-minute charge curves of the EV stations", Shape: curve, Unit: unitW, Step: 30 * time.Minute,
		Perimeter: "ev-stations", Expr: individual(curveEV), Consent: true},
}

// lookupMetric returns a use case's metric; an empty id is its first.
func lookupMetric(useCase, id string) (*metric, error) {
	var ids []string
	for i := range metrics {
		m := &metrics[i]
		if m.UseCase != useCase {
			continue
		}
		if id == "" || m.ID == id {
			return m, nil
		}
		ids = append(ids, m.ID)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("unknown query type %q (use uc1 to uc5 or promql)", useCase)
	}
	return nil, fmt.Errorf("use case %s has no metric %q (it has %s)", useCase, id, strings.Join(ids, ", "))
}
