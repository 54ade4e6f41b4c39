package dashboards

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/metergate/metergate/pkg/district"
)

// Figures of the seed report the dashboards compare against.
const (
	// NationalKWhPerPerson is France's residential and tertiary electricity
	// consumption per inhabitant (kWh/person/year).
	NationalKWhPerPerson = 2223
	// RenewableObjective is the district's share of local renewable
	// production in its consumption (WWF One Planet action plan).
	RenewableObjective = 0.80
	// DefaultTargetKWhPerPerson is the One Planet target offered by default;
	// the dashboard's `target` textbox changes it.
	DefaultTargetKWhPerPerson = 1800
	// RolloutTarget is the number of Linky meters to install.
	RolloutTarget = district.TotalMeters
)

// Units (Grafana unit ids). Daily figures stay in Wh, as the gate serves
// them; Grafana scales the display to kWh or MWh.
const (
	unitWh      = "watth"
	unitKWh     = "kwatth"
	unitW       = "watt"
	unitRatio   = "percentunit"
	unitCount   = "short"
	unitSeconds = "s"
)

// privacyNotice is what a panel shows instead of a number when the gate
// hid every point: too few meters contributed. It is the gate's own words
// (gate.ErrSuppressed), so the reader learns why, never a zero.
const privacyNotice = "Hidden to protect privacy: fewer than the required meters"

func daily(title, description, unit string, targets ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Unit(unit).
		NoValue(privacyNotice).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(60).
		Height(8).
		Span(12)
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func curves(title, description string, targets ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Unit(unitW).
		NoValue(privacyNotice).
		LineWidth(1).
		Height(9).
		Span(24)
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func statPanel(title, description, unit string, span uint32, target cog.Builder[variants.Dataquery]) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(ds()).
		Unit(unit).
		NoValue(privacyNotice).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		Height(5).
		Span(span).
		WithTarget(target)
}

// householdsRegex takes the cluster ids out of the households-<cluster>
// perimeters listed by the plugin's perimeter(uc4) variable query: only the
// clusters with enough households to publish their quartiles are offered.
const householdsRegex = `/^households-(.+)$/`

// onePlanet is UC4's public performance dashboard of the WWF One Planet
// action plan: aggregates of at least 101 meters (consumption) or 11
// producers, as the public may read them.
func onePlanet() (dashboard.Dashboard, error) {
	const conso = `sum(linky_consumption_daily_wh{perimeter="confluence"})`
	perPerson := fmt.Sprintf("%s * 365 / 1000 / $inhabitants", conso)
	b := base("metergate-uc4-one-planet", "Confluence — One Planet performance",
		"UC4, public: daily consumption and production of the Confluence district (WWF One Planet action plan), published at D+2 through metergate's privacy gate.",
		"uc4", "public").
		WithVariable(datasourceVariable("public")).
		WithVariable(dashboard.NewTextBoxVariableBuilder("target").
			Label("Target (kWh/person/year)").
			Description("The district's One Planet consumption target per inhabitant, to compare with the national 2,223 kWh/person/year.").
			DefaultValue(dashboard.StringOrMap{String: cog.ToPtr(fmt.Sprint(DefaultTargetKWhPerPerson))})).
		WithVariable(dashboard.NewConstantVariableBuilder("inhabitants").
			Label("Inhabitants").
			Description("Inhabitants of the district (seed report: about 8,000), to annualise per person.").
			Value(dashboard.StringOrMap{String: cog.ToPtr(fmt.Sprint(district.Inhabitants))})).
		WithVariable(dashboard.NewQueryVariableBuilder("cluster").
			Label("Cluster").
			Description("Clusters whose household quartiles are shown (one panel each): those with a registered households-<cluster> perimeter, i.e. at least 101 residential meters.").
			Datasource(ds()).
			Query(dashboard.StringOrMap{String: cog.ToPtr("perimeter(uc4)")}).
			Definition("perimeter(uc4)").
			Regex(householdsRegex).
			Refresh(dashboard.VariableRefreshOnDashboardLoad).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true))

	b.WithRow(row("District"))
	b.WithPanel(daily("Daily consumption of the district",
		"UC4. Residential and business consumption of the whole district per local day (sum of every contributing Linky meter).",
		unitWh, useCase("A", UC4, "consumption", "confluence")))
	b.WithPanel(daily("Same period of the previous year",
		"UC4. The district's daily consumption one year earlier, for the trend: compare with the panel on its left.",
		unitWh, useCase("A", UC4, "consumption", "confluence")).TimeShift("1y"))
	b.WithPanel(daily("Daily consumption per inhabitant",
		fmt.Sprintf("UC4. District consumption divided by its inhabitants, per day. The dashed line is the national %d kWh/person/year (%.0f Wh a day).",
			NationalKWhPerPerson, NationalKWhPerPerson*1000.0/365),
		unitWh, useCase("A", UC4, "per_inhabitant", "confluence")).
		Thresholds(thresholds(NationalKWhPerPerson * 1000.0 / 365)).ThresholdsStyle(thresholdLine()))
	b.WithPanel(daily("Annualised kWh per inhabitant against the national figure and the target",
		"UC4. Each day's consumption per inhabitant times 365, as a share of the national 2,223 kWh/person/year (A) and of the target set in the dashboard's Target box (B). Below 100 % is better.",
		unitRatio,
		promql("A", fmt.Sprintf("%s / %d", perPerson, NationalKWhPerPerson), "1d"),
		promql("B", perPerson+" / $target", "1d")).
		Thresholds(thresholds(1)).ThresholdsStyle(thresholdLine()).DrawStyle(common.GraphDrawStyleLine))

	b.WithRow(row("Clusters"))
	b.WithPanel(daily("Daily consumption of each cluster",
		"UC4. One series per cluster (30). A cluster whose day gathers fewer than 101 contributing meters is hidden: the panel shows the privacy notice, not a number.",
		unitWh, useCase("A", UC4, "clusters", "confluence")).DrawStyle(common.GraphDrawStyleLine))
	b.WithPanel(daily("Daily consumption per inhabitant of each cluster",
		"UC4. Each cluster's daily consumption divided by its inhabitants (registry). Hidden clusters show the privacy notice.",
		unitWh, useCase("A", UC4, "clusters_per_inhabitant", "confluence")).DrawStyle(common.GraphDrawStyleLine))
	b.WithPanel(daily("Household consumption quartiles — cluster $cluster",
		"UC4. First quartile, median and third quartile of the daily consumption of the cluster's residential meters (households and the common areas of their buildings), rounded up to whole kWh by the gate. Hidden below 101 contributing meters. The registry publishes households as quartiles only, and clusters as sums only: a sum of both, or quartiles of both, would isolate the cluster's businesses.",
		unitWh,
		promql("A", `quantile(0.25, linky_consumption_daily_wh{perimeter="households-$cluster"})`, "1d"),
		promql("B", `quantile(0.5, linky_consumption_daily_wh{perimeter="households-$cluster"})`, "1d"),
		promql("C", `quantile(0.75, linky_consumption_daily_wh{perimeter="households-$cluster"})`, "1d")).
		DrawStyle(common.GraphDrawStyleLine).Span(8).Repeat("cluster").RepeatDirection(dashboard.PanelRepeatDirectionH).MaxPerRow(3))

	b.WithRow(row("Local production"))
	b.WithPanel(daily("Daily production of the 18 producers",
		"UC4. The 14 PV and 4 cogeneration producers together: energy injected into the grid (A) and self-consumed on site, generation minus injection (B), stacked. Not split by kind: the 4 cogeneration units are fewer than the 11 producers the policy requires, and a PV figure next to the total would give theirs by difference.",
		unitWh,
		useCase("A", UC4, "injected", "producers"),
		useCase("B", UC4, "self_consumed", "producers")).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)))
	b.WithPanel(daily("Local production in the district's consumption, against the renewable objective",
		fmt.Sprintf("UC4. Generation of the 18 local producers (PV and cogeneration together, as the seed report counts them) divided by the district's consumption, per day, against the %.0f %% renewable objective (dashed line). PV alone is not publishable (it would give the 4 cogeneration units by difference), so a cogeneration not fuelled by renewables makes this an upper bound of the renewable share.", RenewableObjective*100),
		unitRatio,
		promql("A", `sum(producer_generation_daily_wh{perimeter="producers"}) / `+conso, "1d")).
		Thresholds(thresholds(RenewableObjective)).ThresholdsStyle(thresholdLine()).DrawStyle(common.GraphDrawStyleLine))
	return b.Build()
}

// Buildings of the use cases, by perimeter name.
var (
	newBuilding = "building-new-building"
	renovated   = []string{"building-renov-1", "building-renov-2", "building-renov-3", "building-renov-4", "building-renov-5", "building-renov-6", "building-estate"}
)

// buildings is UC1 and UC2 for the restricted project partners:
// aggregates of at least 11 meters of one building.
func buildings() (dashboard.Dashboard, error) {
	b := base("metergate-buildings", "Buildings",
		"UC1 and UC2, restricted to the project's partners: the new building against its RT2012 cap, renovated buildings' daily totals and quartiles. Consenting households are in the companion dashboard.",
		"uc1", "uc2", "restricted").
		WithVariable(datasourceVariable("restricted")).
		WithVariable(custom("building", "Renovated building", "Renovated building or estate of UC2.", renovated, false))

	b.WithRow(row("UC1 — new building"))
	b.WithPanel(daily("Monthly consumption against the RT2012 cap",
		"UC1. The new building's consumption summed per calendar month, with its regulatory cap for the month (RT2012: about 50 kWhep/m²/year modulated, about 60 in Lyon, times the surface in the registry).",
		unitWh, useCase("A", UC1, "monthly_vs_target", newBuilding)).Span(12))
	b.WithPanel(daily("Daily consumption of the new building",
		"UC1. Sum of the building's meters per local day (hidden below 11 contributing meters).",
		unitWh, useCase("A", UC1, "daily_sum", newBuilding)))

	b.WithRow(row("UC2 — renovated buildings ($building)"))
	b.WithPanel(daily("Daily consumption of the building",
		"UC2. Sum of the building's households and common areas per local day.",
		unitWh, useCase("A", UC2, "daily_sum", "$building")))
	b.WithPanel(daily("Daily consumption quartiles of the building",
		"UC2. First quartile, median (the anonymised household) and third quartile per day, rounded up to whole kWh.",
		unitWh,
		useCase("A", UC2, "daily_q1", "$building"),
		useCase("B", UC2, "daily_median", "$building"),
		useCase("C", UC2, "daily_q3", "$building")).DrawStyle(common.GraphDrawStyleLine))
	return b.Build()
}

// households is UC2's and UC3's consented figures: the common areas (the
// owners consented), households' load curves and individual days.
func households() (dashboard.Dashboard, error) {
	// UC3's consents are the renovated buildings' households (up to 125),
	// not the estate's: an estate choice would be an empty UC3 panel.
	consented := make([]string, 0, len(renovated))
	for _, p := range renovated {
		if b := strings.TrimPrefix(p, "building-"); strings.HasPrefix(b, "renov-") {
			consented = append(consented, b)
		}
	}
	b := base("metergate-buildings-households", "Buildings — consenting households",
		"UC2 and UC3, consented audience: only meters whose holders consented for the use case over the whole period shown. Perimeters uc2-<building>, uc2-common-<building> and uc3-<building> of the registry.",
		"uc2", "uc3", "consented").
		WithVariable(datasourceVariable("consented")).
		WithVariable(custom("building", "Building", "Renovated building whose consenting households are shown.", consented, false))

	b.WithRow(row("UC2 — common areas and load curves"))
	b.WithPanel(daily("Daily consumption of the common areas",
		"UC2. Lifts, lighting and shared heating of the building, each common-area meter's day (the owner consented).",
		unitWh, promql("A", `linky_consumption_daily_wh{perimeter="uc2-common-$building"}`, "1d")).DrawStyle(common.GraphDrawStyleLine).Span(24))
	b.WithPanel(curves("10-minute load curves of consenting households",
		"UC2. Synchronous individual load curves of the building's consenting households (average power over each 10 minutes).",
		useCase("A", UC2, "load_curve", "uc2-$building")))

	b.WithRow(row("UC3 — individual households"))
	b.WithPanel(daily("Daily consumption of each consenting household",
		"UC3. Each consenting household's daily consumption (one series per meter).",
		unitWh, useCase("A", UC3, "daily", "uc3-$building")).DrawStyle(common.GraphDrawStyleLine))
	b.WithPanel(daily("Consenting households: total and median",
		"UC3. Sum (A) and median (B) of the consenting households' daily consumption.",
		unitWh,
		useCase("A", UC3, "daily_sum", "uc3-$building"),
		useCase("B", UC3, "daily_median", "uc3-$building")).DrawStyle(common.GraphDrawStyleLine))
	return b.Build()
}

// mobility is UC5: the charging stations consented to share their curves.
func mobility() (dashboard.Dashboard, error) {
	b := base("metergate-uc5-mobility", "Electric mobility",
		"UC5, consented audience: the CNR station, the three Bluely stations and the Navya shuttle depot.",
		"uc5", "consented").
		WithVariable(datasourceVariable("consented"))
	b.WithPanel(curves("Charge curves of the stations",
		"UC5. Average power delivered to vehicles over each 30 minutes, one series per station's meter.",
		useCase("A", UC5, "charge_curves", "ev-stations")))
	b.WithPanel(daily("Energy per day of each station",
		"UC5. Each station meter's daily consumption, from its index register at local midnights.",
		unitWh, promql("A", `linky_consumption_daily_wh{perimeter="ev-stations"}`, "1d")))
	b.WithPanel(daily("Energy per day, all stations",
		"UC5. Daily consumption of the five stations together.",
		unitWh, promql("A", `sum(linky_consumption_daily_wh{perimeter="ev-stations"})`, "1d")))
	b.WithPanel(daily("Charging sessions per day",
		"UC5. Sessions started at each station per local day, from the stations' session counters at local midnights.",
		"short", promql("A", `ev_station_sessions_daily{perimeter="ev-stations"}`, "1d")))
	return b.Build()
}

// Operator PromQL: the raw storage, audited. Concentrator gauges are sent
// at each collection, hence last_over_time.
const (
	installedExpr  = `last_over_time(linky_concentrator_meters_installed[1d])`
	reconciledExpr = `last_over_time(linky_concentrator_meters_reconciled[1d])`
	collectedExpr  = `last_over_time(linky_concentrator_last_collection_timestamp_seconds[3d])`
)

// operations is the operator's roll-out and data-quality dashboard. Its
// queries are those of rules/*.yml written over the raw series, so that
// they show the past too (recorded series start when the rules do).
func operations() (dashboard.Dashboard, error) {
	behind := fmt.Sprintf(`scalar(max(%s)) - %s`, collectedExpr, collectedExpr)
	b := base("metergate-operations", "Roll-out and data quality",
		"Operator audience: the roll-out of the Linky meters, PLC reconciliation, the nightly collection of the concentrators and the D+1 delivery of the daily readings. Raw PromQL, every read audited.",
		"operations", "operator").
		WithVariable(datasourceVariable("operator"))

	b.WithRow(row("Roll-out"))
	b.WithPanel(statPanel("Meters installed",
		fmt.Sprintf("Linky meters installed downstream of the 61 concentrators; the dashed line is the %d target.", RolloutTarget),
		unitCount, 6, promql("A", "sum("+installedExpr+")", "1h")).
		Thresholds(thresholds(RolloutTarget)))
	b.WithPanel(statPanel("Share of the roll-out target",
		fmt.Sprintf("Meters installed divided by the %d meters of the roll-out.", RolloutTarget),
		unitRatio, 6, promql("A", fmt.Sprintf("sum(%s) / %d", installedExpr, RolloutTarget), "1h")))
	b.WithPanel(statPanel("Reconciled meters, district",
		"Meters found and communicating over PLC at their concentrator's last collection, over meters installed.",
		unitRatio, 6, promql("A", fmt.Sprintf("sum(%s) / sum(%s)", reconciledExpr, installedExpr), "1h")))
	b.WithPanel(statPanel("Concentrators silent since the last collection",
		"Concentrators whose last collection is more than 12 h older than the newest of the nightly round (alert ConcentratorMissedLastCollection).",
		unitCount, 6, promql("A", fmt.Sprintf("count((%s) > 12 * 3600) or vector(0)", behind), "1h")).
		Thresholds(thresholds(1)))
	b.WithPanel(daily("Meters installed against the target",
		fmt.Sprintf("Meters installed over time; the dashed line is the %d target.", RolloutTarget),
		unitCount, promql("A", "sum("+installedExpr+")", "1h")).
		Thresholds(thresholds(RolloutTarget)).ThresholdsStyle(thresholdLine()).DrawStyle(common.GraphDrawStyleLine).NoValue("No data"))
	b.WithPanel(daily("Reconciliation rate per concentrator",
		"Reconciled over installed meters of each concentrator (rule concentrator:linky_meters_reconciled:ratio); below 80 % alerts.",
		unitRatio, promql("A", fmt.Sprintf("%s / %s", reconciledExpr, installedExpr), "1h")).
		Thresholds(thresholds(0.8)).DrawStyle(common.GraphDrawStyleLine).NoValue("No data"))

	b.WithRow(row("Collection and D+1 delivery"))
	b.WithPanel(daily("Collection delay behind the newest collection",
		"Per concentrator, how long before the nightly round's newest collection it was last collected: above 12 h it was skipped (silent since the last collection).",
		unitSeconds, promql("A", behind, "1h")).
		Thresholds(thresholds(12 * 3600)).ThresholdsStyle(thresholdLine()).DrawStyle(common.GraphDrawStyleLine).NoValue("No data"))
	b.WithPanel(daily("D+1 delivery completeness per day",
		"Share of installed meters whose daily index reading of the day arrived: every reading is stamped at the local midnight closing its day, and each 24-hour window ending at a daily step holds one local midnight.",
		unitRatio, promql("A", fmt.Sprintf("count(count_over_time(linky_index_wh[1d])) / sum(%s)", installedExpr), "1d")).
		Thresholds(thresholds(0.95)).NoValue("No data"))
	b.WithPanel(daily("D+1 delivery completeness per concentrator",
		"The same per concentrator (rule concentrator:linky_daily_readings:latest_day_ratio for the latest day).",
		unitRatio, promql("A", fmt.Sprintf("count by (concentrator) (count_over_time(linky_index_wh[1d])) / on (concentrator) max by (concentrator) (%s)", installedExpr), "1d")).
		DrawStyle(common.GraphDrawStyleLine).Span(24).NoValue("No data"))
	return b.Build()
}
