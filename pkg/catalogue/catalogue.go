// Package catalogue is the list of metrics metergate accepts: what each one
// measures, its unit, its labels and how the privacy policy classifies it.
//
// Ingestion refuses any series that is not described here, so that a
// misconfigured sender is loud, and the privacy gate reads the flow and the
// nature of a metric from here, never from the query.
package catalogue

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
)

// Flow is the direction of energy, as the policy names it.
type Flow string

const (
	Consumption Flow = "consumption" // extraction from the grid (soutirage)
	Production  Flow = "production"  // injection into the grid
	NoFlow      Flow = ""            // not an energy reading of a meter (concentrator state)
)

// Nature is the shape of a meter's data, as the policy names it.
type Nature string

const (
	// Daily data: one daily index reading per local day ("arrêté quotidien"),
	// from which daily energy is computed.
	Daily Nature = "daily"
	// Curve data: a load curve, average power over each step. Needs consent.
	Curve Nature = "curve"
	// Infrastructure data about concentrators, not about households.
	Infrastructure Nature = "infrastructure"
)

// Subject says whose data a series is.
type Subject string

const (
	// Meter series carry the data of one RMP (one household, business,
	// producer or charging station): personal data under the policy.
	Meter Subject = "meter"
	// Concentrator series describe a PLC concentrator: not personal data.
	Concentrator Subject = "concentrator"
)

// Label names used across the catalogue.
const (
	LabelRMP          = "rmp"          // 14-digit PRM of the meter
	LabelConcentrator = "concentrator" // concentrator id, e.g. c07
	LabelCluster      = "cluster"      // cluster id, e.g. k12
	LabelUsage        = "usage"        // residential | business
	LabelKind         = "kind"         // producer kind: pv | cogeneration
	LabelStation      = "station"      // EV charging station id
	LabelOperator     = "operator"     // EV station operator: cnr | bluely | navya
	LabelPLC          = "plc"          // PLC technology of a concentrator: G1 | G3
)

// Metric is one entry of the catalogue.
type Metric struct {
	Name    string
	Help    string
	Unit    string // Prometheus unit suffix, also the physical unit
	Type    string // Prometheus metric type: gauge or counter
	Subject Subject
	Flow    Flow
	Nature  Nature
	// Required labels must be present on every series; Optional ones may be.
	// Any other label (but __name__) is refused.
	Required []string
	Optional []string
	// Stamp tells how timestamps are set, for documentation.
	Stamp string
	// DerivedFrom, when set, names the index register this metric is
	// computed from by the privacy gate at read time. Derived metrics are
	// never stored: ingestion refuses them.
	DerivedFrom string
}

// Metric names.
const (
	IndexConsumption   = "linky_index_wh"
	IndexInjection     = "linky_injection_index_wh"
	IndexGeneration    = "producer_generation_index_wh"
	CurveConsumption   = "linky_load_curve_watts"
	CurveInjection     = "linky_injection_curve_watts"
	CurveEVCharge      = "ev_station_charge_power_watts"
	EVSessions         = "ev_station_sessions_total"
	ConcInstalled      = "linky_concentrator_meters_installed"
	ConcReconciled     = "linky_concentrator_meters_reconciled"
	ConcLastCollection = "linky_concentrator_last_collection_timestamp_seconds"
	ConcInfo           = "linky_concentrator_info"

	// Derived daily energies, computed by the gate from the index registers
	// at local midnights (see docs/gate.md).
	DailyConsumption = "linky_consumption_daily_wh"
	DailyInjection   = "linky_injection_daily_wh"
	DailyGeneration  = "producer_generation_daily_wh"
	// Derived daily count of charging sessions, from the sessions counter.
	DailyEVSessions = "ev_station_sessions_daily"
)

var meterPlacement = []string{LabelConcentrator, LabelCluster}

// All is the catalogue. Its order is the documentation's order.
var All = []Metric{
	{
		Name: IndexConsumption, Unit: "Wh", Type: "counter", Subject: Meter, Flow: Consumption, Nature: Daily,
		Help:     "Consumption (extraction) index register of the meter, total of all tariff registers (EAS T), read once per local day.",
		Required: []string{LabelRMP}, Optional: append([]string{LabelUsage}, meterPlacement...),
		Stamp: "local midnight Europe/Paris that closes the day (Enedis 'arrêté quotidien')",
	},
	{
		Name: IndexInjection, Unit: "Wh", Type: "counter", Subject: Meter, Flow: Production, Nature: Daily,
		Help:     "Injection index register of a producer's meter (energy delivered to the grid), read once per local day.",
		Required: []string{LabelRMP}, Optional: append([]string{LabelKind}, meterPlacement...),
		Stamp: "local midnight Europe/Paris that closes the day",
	},
	{
		Name: IndexGeneration, Unit: "Wh", Type: "counter", Subject: Meter, Flow: Production, Nature: Daily,
		Help:     "Generation index of a producer's own production meter (all energy produced); self-consumption is generation minus injection.",
		Required: []string{LabelRMP}, Optional: append([]string{LabelKind}, meterPlacement...),
		Stamp: "local midnight Europe/Paris that closes the day",
	},
	{
		Name: CurveConsumption, Unit: "watts", Type: "gauge", Subject: Meter, Flow: Consumption, Nature: Curve,
		Help:     "Consumption load curve: average active power over the step (30 min; 10 min in renovated buildings). Collected only with consent.",
		Required: []string{LabelRMP}, Optional: append([]string{LabelUsage}, meterPlacement...),
		Stamp: "end of the interval, as Enedis stamps load curves",
	},
	{
		Name: CurveInjection, Unit: "watts", Type: "gauge", Subject: Meter, Flow: Production, Nature: Curve,
		Help:     "Injection (production) curve: average active power delivered to the grid over the 30-minute step. Collected only with consent.",
		Required: []string{LabelRMP}, Optional: append([]string{LabelKind}, meterPlacement...),
		Stamp: "end of the interval",
	},
	{
		Name: CurveEVCharge, Unit: "watts", Type: "gauge", Subject: Meter, Flow: Consumption, Nature: Curve,
		Help:     "Charge curve of an EV charging station: average power delivered to vehicles over the 30-minute step.",
		Required: []string{LabelRMP, LabelStation}, Optional: append([]string{LabelOperator}, meterPlacement...),
		Stamp: "end of the interval",
	},
	{
		Name: EVSessions, Unit: "", Type: "counter", Subject: Meter, Flow: Consumption, Nature: Daily,
		Help:     "Charging sessions started at an EV station since it was commissioned, read once per local day.",
		Required: []string{LabelRMP, LabelStation}, Optional: append([]string{LabelOperator}, meterPlacement...),
		Stamp: "local midnight Europe/Paris that closes the day",
	},
	{
		Name: ConcInstalled, Type: "gauge", Subject: Concentrator, Nature: Infrastructure,
		Help:     "Linky meters installed downstream of the concentrator.",
		Required: []string{LabelConcentrator}, Optional: []string{LabelCluster},
		Stamp: "time of the collection",
	},
	{
		Name: ConcReconciled, Type: "gauge", Subject: Concentrator, Nature: Infrastructure,
		Help:     "Meters the concentrator has reconciled (found and communicating over PLC) at the last collection.",
		Required: []string{LabelConcentrator}, Optional: []string{LabelCluster},
		Stamp: "time of the collection",
	},
	{
		Name: ConcLastCollection, Unit: "seconds", Type: "gauge", Subject: Concentrator, Nature: Infrastructure,
		Help:     "Unix time of the last successful collection of the concentrator's meters by the head-end.",
		Required: []string{LabelConcentrator}, Optional: []string{LabelCluster},
		Stamp: "time of the collection",
	},
	{
		Name: ConcInfo, Type: "gauge", Subject: Concentrator, Nature: Infrastructure,
		Help:     "Always 1; labels describe the concentrator (PLC technology G1 or G3).",
		Required: []string{LabelConcentrator, LabelPLC}, Optional: []string{LabelCluster},
		Stamp: "time of the collection",
	},
	{
		Name: DailyConsumption, Unit: "Wh", Type: "gauge", Subject: Meter, Flow: Consumption, Nature: Daily, DerivedFrom: IndexConsumption,
		Help:     "Daily consumption of day D: consumption index at the local midnight closing D minus the index at the local midnight opening D. Computed by the gate, never ingested.",
		Required: []string{LabelRMP},
		Stamp:    "local midnight Europe/Paris that closes the day",
	},
	{
		Name: DailyInjection, Unit: "Wh", Type: "gauge", Subject: Meter, Flow: Production, Nature: Daily, DerivedFrom: IndexInjection,
		Help:     "Daily injection of day D, from the injection index at the local midnights around D. Computed by the gate, never ingested.",
		Required: []string{LabelRMP},
		Stamp:    "local midnight Europe/Paris that closes the day",
	},
	{
		Name: DailyGeneration, Unit: "Wh", Type: "gauge", Subject: Meter, Flow: Production, Nature: Daily, DerivedFrom: IndexGeneration,
		Help:     "Daily generation of day D, from the generation index at the local midnights around D. Computed by the gate, never ingested.",
		Required: []string{LabelRMP},
		Stamp:    "local midnight Europe/Paris that closes the day",
	},
	{
		Name: DailyEVSessions, Type: "gauge", Subject: Meter, Flow: Consumption, Nature: Daily, DerivedFrom: EVSessions,
		Help:     "Charging sessions started at a station on day D, from its sessions counter at the local midnights around D. Computed by the gate, never ingested.",
		Required: []string{LabelRMP},
		Stamp:    "local midnight Europe/Paris that closes the day",
	},
}

var byName = func() map[string]*Metric {
	m := make(map[string]*Metric, len(All))
	for i := range All {
		m[All[i].Name] = &All[i]
	}
	return m
}()

// Lookup returns the catalogue entry of a metric name.
func Lookup(name string) (*Metric, bool) {
	m, ok := byName[name]
	return m, ok
}

// Names returns the catalogue's metric names, sorted.
func Names() []string {
	names := make([]string, 0, len(All))
	for _, m := range All {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

var labelValue = map[string]*regexp.Regexp{
	LabelRMP:          regexp.MustCompile(`^[0-9]{14}$`),
	LabelConcentrator: regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`),
	LabelCluster:      regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`),
	LabelStation:      regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`),
	LabelUsage:        regexp.MustCompile(`^(residential|business)$`),
	LabelKind:         regexp.MustCompile(`^(pv|cogeneration)$`),
	LabelOperator:     regexp.MustCompile(`^(cnr|bluely|navya)$`),
	LabelPLC:          regexp.MustCompile(`^(G1|G3)$`),
}

// ValidRMP reports whether s is a 14-digit PRM.
func ValidRMP(s string) bool { return labelValue[LabelRMP].MatchString(s) }

// Validate checks one series' labels against the catalogue and returns its
// entry, or an error that says what is wrong in terms a sender's operator
// can act on.
func Validate(ls labels.Labels) (*Metric, error) {
	name := ls.Get(labels.MetricName)
	m, ok := byName[name]
	if !ok {
		if name == "" {
			return nil, fmt.Errorf("series %s has no metric name", ls.String())
		}
		return nil, fmt.Errorf("metric %q is not in the catalogue", name)
	}
	if m.DerivedFrom != "" {
		return nil, fmt.Errorf("metric %q is computed from %s at read time and cannot be written", name, m.DerivedFrom)
	}
	var err error
	seen := 0
	ls.Range(func(l labels.Label) {
		if err != nil || l.Name == labels.MetricName {
			return
		}
		switch {
		case slices.Contains(m.Required, l.Name):
			seen++
		case slices.Contains(m.Optional, l.Name):
		default:
			err = fmt.Errorf("label %q is not allowed on %s (allowed: %s)", l.Name, name, strings.Join(append(slices.Clone(m.Required), m.Optional...), ", "))
			return
		}
		if re := labelValue[l.Name]; re != nil && !re.MatchString(l.Value) {
			err = fmt.Errorf("label %s=%q of %s does not match %s", l.Name, l.Value, name, re.String())
		}
	})
	if err != nil {
		return nil, err
	}
	if seen != len(m.Required) {
		return nil, fmt.Errorf("%s needs the labels %s", name, strings.Join(m.Required, ", "))
	}
	return m, nil
}
