package plugin

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/metergate/metergate/backend/apiclient"
	"github.com/metergate/metergate/pkg/localday"
)

// HiddenNotice is the panel notice of points the gate hid: a hidden point
// is a gap with this notice, never a zero.
const HiddenNotice = apiclient.SuppressedWarning

func hiddenNotice(hidden, total int) data.Notice {
	text := "Some points are " + HiddenNotice + " contributed to them."
	if total > 0 {
		text = fmt.Sprintf("%d of %d points %s contributed to them.", hidden, total, HiddenNotice)
	}
	return data.Notice{Severity: data.NoticeSeverityWarning, Text: text}
}

func newMeta(expr string) *data.FrameMeta {
	return &data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}, ExecutedQueryString: expr}
}

// seriesFrames lays out an answer as it is: one frame per series, its own
// timestamps (PromQL, load curves). prefix names individual series by RMP.
func seriesFrames(res *apiclient.Result, expr, unit, prefix string) data.Frames {
	var frames data.Frames
	for _, s := range sortedSeries(res.Series) {
		times := make([]time.Time, len(s.Samples))
		values := make([]float64, len(s.Samples))
		for i, p := range s.Samples {
			times[i], values[i] = p.T, p.V
		}
		name := seriesName(s.Labels, prefix)
		f := data.NewFrame(name,
			data.NewField(data.TimeSeriesTimeFieldName, nil, times),
			data.NewField(data.TimeSeriesValueFieldName, data.Labels(s.Labels), values).
				SetConfig(&data.FieldConfig{Unit: unit, DisplayNameFromDS: name}))
		f.SetMeta(newMeta(expr))
		frames = append(frames, f)
	}
	return withNotices(frames, res, expr, -1, 0)
}

// withNotices adds the privacy notice to the first frame (or to an empty
// frame when everything was hidden); hidden < 0 means "not counted".
func withNotices(frames data.Frames, res *apiclient.Result, expr string, hidden, total int) data.Frames {
	if !res.Suppressed() && hidden <= 0 {
		return frames
	}
	if len(frames) == 0 {
		f := data.NewFrame("hidden")
		f.SetMeta(newMeta(expr))
		frames = data.Frames{f}
	}
	n := hiddenNotice(max(hidden, 0), total)
	if hidden < 0 {
		n = hiddenNotice(0, 0)
	}
	frames[0].Meta.Notices = append(frames[0].Meta.Notices, n)
	return frames
}

func sortedSeries(ss []apiclient.Series) []apiclient.Series {
	out := slices.Clone(ss)
	sort.SliceStable(out, func(i, j int) bool { return labelString(out[i].Labels) < labelString(out[j].Labels) })
	return out
}

func labelString(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q,", k, ls[k])
	}
	return b.String()
}

// seriesName is a series' display name: the meter for individual values,
// the group (cluster) for grouped sums, else the labels.
func seriesName(ls map[string]string, prefix string) string {
	switch {
	case ls["rmp"] != "" && prefix != "":
		return prefix + " " + ls["rmp"]
	case ls["cluster"] != "":
		return "cluster " + ls["cluster"]
	}
	var parts []string
	for _, k := range slices.Sorted(mapKeys(ls)) {
		if k != "__name__" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, ls[k]))
		}
	}
	name := ls["__name__"]
	if len(parts) > 0 {
		name += "{" + strings.Join(parts, ", ") + "}"
	}
	if name == "" {
		name = "value"
	}
	return name
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// dayOf is the local day whose energy a daily point carries: the gate
// stamps day D at the local midnight that closes it.
func dayOf(t time.Time) localday.Day { return localday.Of(t).AddDays(-1) }

// dayGrid is the days a daily range query asks for: those closed by the
// local midnights in [from, to], every step-th one, up to the last day the
// server answered for (later days are not yet published, D+2).
func dayGrid(tr backend.TimeRange, step time.Duration, res *apiclient.Result) []localday.Day {
	var last time.Time
	for _, s := range res.Series {
		for _, p := range s.Samples {
			if p.T.After(last) {
				last = p.T
			}
		}
	}
	if last.IsZero() {
		return nil
	}
	n := int(step / day)
	first := localday.Of(tr.From)
	if first.Start().Before(tr.From) {
		first = first.AddDays(1) // the first midnight at or after from
	}
	var grid []localday.Day
	for m := first; !m.Start().After(tr.To) && !m.Start().After(last); m = m.AddDays(n) {
		grid = append(grid, m.AddDays(-1))
	}
	return grid
}

// dailyFrames lays out daily figures on the grid of requested days, each
// series one frame, stamped at the start of the day, with null where the
// gate hid the day.
func dailyFrames(res *apiclient.Result, expr string, m *metric, perimeter string, info *apiclient.Perimeter, tr backend.TimeRange, step time.Duration) data.Frames {
	grid := dayGrid(tr, step, res)
	var frames data.Frames
	hidden, total := 0, 0
	for _, s := range sortedSeries(res.Series) {
		byDay := map[localday.Day]float64{}
		for _, p := range s.Samples {
			byDay[dayOf(p.T)] = p.V
		}
		divisor := 1.0
		if m.Post == postPerClusterInhabitant {
			divisor = float64(clusterInhabitants(info, s.Labels["cluster"]))
			if divisor <= 0 {
				continue // no inhabitants known: no per-inhabitant figure
			}
		}
		times := make([]time.Time, len(grid))
		values := make([]*float64, len(grid))
		for i, dd := range grid {
			times[i] = dd.Start()
			total++
			if v, ok := byDay[dd]; ok {
				v /= divisor
				values[i] = &v
			} else {
				hidden++
			}
		}
		name := dailyName(m, perimeter, s.Labels)
		f := data.NewFrame(name,
			data.NewField(data.TimeSeriesTimeFieldName, nil, times),
			data.NewField(data.TimeSeriesValueFieldName, data.Labels(s.Labels), values).
				SetConfig(&data.FieldConfig{Unit: m.Unit, DisplayNameFromDS: name}))
		f.SetMeta(newMeta(expr))
		frames = append(frames, f)
	}
	if !res.Suppressed() {
		hidden = 0 // a missing reading is not a privacy notice
	}
	return withNotices(frames, res, expr, hidden, total)
}

func dailyName(m *metric, perimeter string, ls map[string]string) string {
	switch {
	case ls["rmp"] != "":
		return "household " + ls["rmp"]
	case ls["cluster"] != "" && m.Post == postPerClusterInhabitant:
		return "cluster " + ls["cluster"] + " per inhabitant"
	case ls["cluster"] != "":
		return "cluster " + ls["cluster"]
	}
	return m.Title + " — " + perimeter
}

func clusterInhabitants(info *apiclient.Perimeter, id string) int {
	if info == nil {
		return 0
	}
	for _, c := range info.Clusters {
		if c.ID == id {
			return c.Inhabitants
		}
	}
	return 0
}

// monthlyFrames sums a building's daily consumption per calendar month
// (Europe/Paris) and sets the regulatory target beside it, prorated to the
// same days. A month with a hidden day has no total: a partial sum would
// understate the building's consumption without saying so.
func monthlyFrames(res *apiclient.Result, expr string, m *metric, perimeter string, info *apiclient.Perimeter, tr backend.TimeRange) (data.Frames, error) {
	if info == nil || info.Building == nil || info.Building.TargetKWhPerM2Year <= 0 || info.Building.SurfaceM2 <= 0 {
		return nil, badf("perimeter %s has no building with a regulatory target in the registry", perimeter)
	}
	b := info.Building
	grid := dayGrid(tr, day, res)
	byDay := map[localday.Day]float64{}
	for _, s := range res.Series {
		for _, p := range s.Samples {
			byDay[dayOf(p.T)] += p.V
		}
	}
	type month struct {
		start       time.Time
		sum, target float64
		days, have  int
	}
	var months []*month
	for _, dd := range grid {
		if len(months) == 0 || months[len(months)-1].start.Month() != dd.Month || months[len(months)-1].start.Year() != dd.Year {
			months = append(months, &month{start: localday.Day{Year: dd.Year, Month: dd.Month, Day: 1}.Start()})
		}
		mo := months[len(months)-1]
		mo.days++
		mo.target += b.TargetKWhPerM2Year * 1000 * b.SurfaceM2 / float64(daysInYear(dd.Year))
		if v, ok := byDay[dd]; ok {
			mo.sum += v
			mo.have++
		}
	}
	times := make([]time.Time, len(months))
	cons := make([]*float64, len(months))
	target := make([]float64, len(months))
	hidden := 0
	var partial []string
	for i, mo := range months {
		times[i] = mo.start
		target[i] = mo.target
		if mo.have == mo.days {
			v := mo.sum
			cons[i] = &v
		} else {
			hidden++
		}
		if mo.days < daysInMonth(mo.start) {
			partial = append(partial, fmt.Sprintf("%s (%d of %d days)", mo.start.Format("2006-01"), mo.days, daysInMonth(mo.start)))
		}
	}
	name := b.Name
	if name == "" {
		name = perimeter
	}
	f := data.NewFrame(name,
		data.NewField(data.TimeSeriesTimeFieldName, nil, times),
		data.NewField("consumption", nil, cons).SetConfig(&data.FieldConfig{Unit: unitWh, DisplayNameFromDS: name + ": monthly consumption"}),
		data.NewField("target", nil, target).SetConfig(&data.FieldConfig{Unit: unitWh,
			DisplayNameFromDS: fmt.Sprintf("%s: regulatory target (%g kWh/m²/year × %g m²)", name, b.TargetKWhPerM2Year, b.SurfaceM2)}))
	f.SetMeta(&data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}, ExecutedQueryString: expr})
	if len(partial) > 0 {
		f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityInfo,
			Text: "Months only partly in the time range or not yet published (D+2), target prorated to the same days: " + strings.Join(partial, ", ")})
	}
	if !res.Suppressed() {
		hidden = 0
	}
	return withNotices(data.Frames{f}, res, expr, hidden, len(months)), nil
}

func daysInYear(y int) int {
	return localday.Day{Year: y + 1, Month: time.January, Day: 1}.Sub(localday.Day{Year: y, Month: time.January, Day: 1})
}

func daysInMonth(start time.Time) int {
	d := localday.Of(start)
	next := localday.Day{Year: d.Year, Month: d.Month + 1, Day: 1}
	if d.Month == time.December {
		next = localday.Day{Year: d.Year + 1, Month: time.January, Day: 1}
	}
	return next.Sub(localday.Day{Year: d.Year, Month: d.Month, Day: 1})
}
