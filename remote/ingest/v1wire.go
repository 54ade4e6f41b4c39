package ingest

import (
	vmprompb "github.com/VictoriaMetrics/VictoriaMetrics/lib/prompb"
	"github.com/VictoriaMetrics/easyproto"
	"github.com/prometheus/prometheus/prompb"
)

// Which decoder reads a remote-write 1.0 request. VictoriaMetrics'
// unmarshaler (lib/prompb) is the fast one: no allocation per series,
// names and values left where they lie. It reads what every live sender
// writes, labels and samples, exactly as Prometheus's generated
// prompb.WriteRequest.Unmarshal does, but not the rest: it drops
// exemplars, turns native histograms into VictoriaMetrics' _count, _sum
// and _bucket{vmrange} series (and drops those without a metric name), and
// refuses some bodies the generated code accepts (unknown group fields,
// varints past 64 bits). Stored as it decodes them, a histogram would be
// refused under another series' name, or not at all, where Prometheus's
// handler refuses the histogram itself. So the requests whose series carry
// exemplars or histograms, and those VictoriaMetrics' unmarshaler refuses,
// are decoded by the generated code, the one Prometheus's handler uses.

// wireError marks a body that is not a WriteRequest: 400.
type wireError struct{ err error }

func (e *wireError) Error() string { return "decoding remote-write 1.0 request: " + e.err.Error() }
func (e *wireError) Unwrap() error { return e.err }

// needsGenerated tells whether a TimeSeries of the request has an exemplar
// or histogram field (3, 4), whatever its wire type, or whether the
// request's fields cannot even be delimited, in which case the generated
// code says what is wrong. It walks the request's and the series' fields
// with VictoriaMetrics' easyproto, without decoding them.
func needsGenerated(raw []byte) bool {
	var fc, sfc easyproto.FieldContext
	var err error
	for src := raw; len(src) > 0; {
		if src, err = fc.NextField(src); err != nil {
			return true
		}
		if fc.FieldNum != 1 {
			continue
		}
		series, ok := fc.MessageData()
		if !ok {
			return true
		}
		for len(series) > 0 {
			if series, err = sfc.NextField(series); err != nil {
				return true
			}
			if sfc.FieldNum == 3 || sfc.FieldNum == 4 {
				return true
			}
		}
	}
	return false
}

// fromGenerated views a series decoded by the generated code as a
// v1Series, through the state's scratch slices.
func (st *v1State) fromGenerated(ts *prompb.TimeSeries) *v1Series {
	st.labels, st.samples = st.labels[:0], st.samples[:0]
	for _, l := range ts.Labels {
		st.labels = append(st.labels, vmprompb.Label{Name: l.Name, Value: l.Value})
	}
	for _, x := range ts.Samples {
		st.samples = append(st.samples, vmprompb.Sample{Value: x.Value, Timestamp: x.Timestamp})
	}
	return &v1Series{labels: st.labels, samples: st.samples, histograms: ts.Histograms, exemplars: ts.Exemplars}
}

// releaseGenerated drops the scratch slices' references to the request's
// strings before the state goes back to its pool.
func (st *v1State) releaseGenerated() {
	clear(st.labels)
	clear(st.samples)
	st.labels, st.samples = st.labels[:0], st.samples[:0]
}
