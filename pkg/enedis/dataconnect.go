package enedis

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/localday"
)

// Data Connect (the Enedis API a household authorises, "metering_data"
// v5): {"meter_reading": {"usage_point_id", "start", "end", "quality",
// "reading_type": {"unit", "measurement_kind", "aggregate",
// "measuring_period"}, "interval_reading": [{"value", "date",
// "interval_length", "measure_type"}]}}. Values are strings. Daily energy
// is dated by its local day; a load curve point by the local date and time
// (no offset) that ends its interval.

type dcFile struct {
	MeterReading *struct {
		UsagePointID string `json:"usage_point_id"`
		Start        string `json:"start"`
		End          string `json:"end"`
		ReadingType  struct {
			Unit            string `json:"unit"`
			MeasurementKind string `json:"measurement_kind"`
			Aggregate       string `json:"aggregate"`
			MeasuringPeriod string `json:"measuring_period"`
		} `json:"reading_type"`
		IntervalReading []struct {
			Value          *string `json:"value"`
			Date           string  `json:"date"`
			IntervalLength string  `json:"interval_length"`
		} `json:"interval_reading"`
	} `json:"meter_reading"`
}

func parseDataConnect(name string, b []byte, o Options) (*File, error) {
	var dc dcFile
	if err := json.Unmarshal(b, &dc); err != nil {
		line := 0
		if se, ok := err.(*json.SyntaxError); ok {
			line = 1 + strings.Count(string(b[:se.Offset]), "\n")
		}
		return nil, &Error{File: name, Line: line, Reason: fmt.Sprintf("not Data Connect JSON: %v", err)}
	}
	mr := dc.MeterReading
	fail := func(i int, format string, args ...any) error {
		where := ""
		if i >= 0 {
			where = fmt.Sprintf("interval_reading[%d]: ", i)
		}
		return &Error{File: name, Reason: where + fmt.Sprintf(format, args...)}
	}
	if mr == nil {
		return nil, fail(-1, "no meter_reading object")
	}
	if !catalogue.ValidRMP(mr.UsagePointID) {
		return nil, fail(-1, "usage_point_id %q is not 14 digits", mr.UsagePointID)
	}
	flow := o.Flow
	if flow == "" {
		flow = catalogue.Consumption
	}
	f := &File{Name: name, Format: "data-connect"}
	rt := mr.ReadingType
	switch {
	case rt.MeasuringPeriod == "P1D" || (rt.MeasurementKind == "energy" && rt.Aggregate == "sum"):
		s, err := dcDaily(mr.UsagePointID, flow, rt.Unit, mr.IntervalReading, fail)
		if err != nil {
			return nil, err
		}
		f.Series = append(f.Series, s)
		f.Notes = append(f.Notes, "daily energies written as an index register starting at 0 Wh (Data Connect gives no index)")
	case rt.MeasurementKind == "power" && rt.Aggregate == "average":
		s, err := dcCurve(mr.UsagePointID, flow, rt.Unit, mr.IntervalReading, fail)
		if err != nil {
			return nil, err
		}
		f.Series = append(f.Series, s)
	default:
		return nil, fail(-1, "reading_type %+v is neither daily energy nor a load curve", rt)
	}
	return f, nil
}

type dcReadings = []struct {
	Value          *string `json:"value"`
	Date           string  `json:"date"`
	IntervalLength string  `json:"interval_length"`
}

func dcValue(v *string) (float64, bool, error) {
	if v == nil {
		return 0, false, nil
	}
	return parseValue(*v)
}

// dcDaily turns daily energies into the index register the gate derives
// daily energy from: 0 Wh at the opening of the first day, plus each day's
// energy. A day without a value must stay a gap: the register then steps
// down by 1 Wh across it, which the gate reads as a meter change (no value
// that day) while the days around it keep theirs.
func dcDaily(prm string, flow catalogue.Flow, unit string, rs dcReadings, fail func(int, string, ...any) error) (Series, error) {
	s := Series{PRM: prm, Metric: indexMetric(flow)}
	scale := 1.0
	switch unit {
	case "Wh":
	case "kWh":
		scale = 1000
	default:
		return s, fail(-1, "daily energy unit %q (Wh or kWh)", unit)
	}
	var prev localday.Day
	index := 0.0
	for i, r := range rs {
		d, err := localday.Parse(r.Date)
		if err != nil {
			return s, fail(i, "date %q is not YYYY-MM-DD", r.Date)
		}
		if !prev.IsZero() && !d.After(prev) {
			return s, fail(i, "date %s is not after %s", d, prev)
		}
		v, ok, err := dcValue(r.Value)
		if err != nil {
			return s, fail(i, "%v", err)
		}
		if !prev.IsZero() && d != prev.AddDays(1) {
			// Days missing from the list: a gap, as a null value.
			index--
		}
		if len(s.Samples) == 0 || !s.Samples[len(s.Samples)-1].T.Equal(d.Start()) {
			s.Samples = append(s.Samples, Sample{T: d.Start(), V: index})
		}
		if ok {
			index += v * scale
		} else {
			index--
		}
		s.Samples = append(s.Samples, Sample{T: d.End(), V: index})
		prev = d
	}
	return s, nil
}

// dcCurve reads a load curve. Local times repeat in the autumn change
// (two 02:30); the readings are in time order, which tells them apart.
func dcCurve(prm string, flow catalogue.Flow, unit string, rs dcReadings, fail func(int, string, ...any) error) (Series, error) {
	s := Series{PRM: prm, Metric: curveMetric(flow)}
	var last time.Time
	for i, r := range rs {
		t, err := time.ParseInLocation(time.DateTime, r.Date, localday.Paris)
		if err != nil {
			return s, fail(i, "date %q is not YYYY-MM-DD hh:mm:ss", r.Date)
		}
		if t.In(localday.Paris).Format(time.DateTime) != r.Date {
			return s, fail(i, "date %s does not exist in Europe/Paris (spring change)", r.Date)
		}
		// In the autumn hour a local time names two instants: take the
		// earlier one that follows the previous reading.
		if early := t.Add(-time.Hour); early.In(localday.Paris).Format(time.DateTime) == r.Date && (last.IsZero() || early.After(last)) {
			t = early
		}
		if !last.IsZero() && !t.After(last) {
			return s, fail(i, "date %s is not after the previous reading", r.Date)
		}
		last = t
		v, ok, err := dcValue(r.Value)
		if err != nil {
			return s, fail(i, "%v", err)
		}
		if !ok {
			continue
		}
		switch unit {
		case "W":
		case "kW":
			v *= 1000
		case "Wh", "kWh":
			step, err := isoMinutes(r.IntervalLength)
			if err != nil {
				return s, fail(i, "%v", err)
			}
			if unit == "kWh" {
				v *= 1000
			}
			v = v * float64(time.Hour) / float64(step)
		default:
			return s, fail(-1, "load curve unit %q (W, kW, Wh or kWh)", unit)
		}
		s.Samples = append(s.Samples, Sample{T: t, V: v})
	}
	return s, nil
}

// isoMinutes reads PT30M, PT10M, PT60M.
func isoMinutes(s string) (time.Duration, error) {
	m, ok := strings.CutPrefix(s, "PT")
	m, ok2 := strings.CutSuffix(m, "M")
	n, err := strconv.Atoi(m)
	if !ok || !ok2 || err != nil || n <= 0 {
		return 0, fmt.Errorf("interval_length %q is not PTnM", s)
	}
	return time.Duration(n) * time.Minute, nil
}
