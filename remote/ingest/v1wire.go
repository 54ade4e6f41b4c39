package ingest

import (
	"math"
	"unsafe"

	vmprompb "github.com/VictoriaMetrics/VictoriaMetrics/lib/prompb"
	"github.com/VictoriaMetrics/easyproto"
	"github.com/prometheus/prometheus/prompb"
)

// Which decoder reads a remote-write 1.0 request. VictoriaMetrics'
// unmarshaler (lib/prompb) is the fast one: no allocation per series,
// names and values left where they lie. It reads what every live sender
// writes, labels and samples, as Prometheus's generated
// prompb.WriteRequest.Unmarshal does (FuzzV1MatchesPrometheus), but not
// the rest: it drops exemplars, turns native histograms into
// VictoriaMetrics' _count, _sum and _bucket{vmrange} series (and drops
// those without a metric name), and refuses some bodies the generated code
// accepts (unknown group fields, varints past 64 bits), and accepts a few
// the generated code refuses (a field numbered 0, or past 2^31-1, which it
// skips as unknown). Stored as it decodes them, a histogram would be
// refused under another series' name, or not at all, where Prometheus's
// handler refuses the histogram itself. So the requests whose series carry
// exemplars or histograms, those VictoriaMetrics' unmarshaler refuses and
// those only it accepts are decoded by the generated code, the one
// Prometheus's handler uses, which answers as Prometheus does.

// wireError marks a body that is not a WriteRequest: 400.
type wireError struct{ err error }

func (e *wireError) Error() string { return "decoding remote-write 1.0 request: " + e.err.Error() }
func (e *wireError) Unwrap() error { return e.err }

// scanV1 walks the fields of the request and of its series with
// VictoriaMetrics' easyproto, without decoding them, for two things:
//
//   - whether the generated code must decode the request: a series has an
//     exemplar or histogram field (3, 4), whatever its wire type, a field
//     of the request, of a series, label, sample or metadata has a number
//     the generated code refuses (numbered), or the fields cannot even be
//     delimited (the generated code then says what is wrong);
//   - for each series VictoriaMetrics' unmarshaler will return (those with
//     a sample field, in order), its label fields as sent when they come
//     first and together, as every sender encodes them, nil otherwise. The
//     same bytes decode to the same labels, so a series whose label fields
//     are those of a series found valid before needs no labels built,
//     sorted and hashed (validCache.lookupWire).
func scanV1(raw []byte, wires [][]byte) (_ [][]byte, generated bool) {
	var fc, sfc easyproto.FieldContext
	var err error
	for src := raw; len(src) > 0; {
		if src, err = fc.NextField(src); err != nil {
			return wires, true
		}
		if !numbered(fc.FieldNum) {
			return wires, true
		}
		if fc.FieldNum == 3 { // metadata: VictoriaMetrics' unmarshaler reads it too
			if md, ok := fc.MessageData(); ok && !numberedFields(md) {
				return wires, true
			}
		}
		if fc.FieldNum != 1 {
			continue
		}
		series, ok := fc.MessageData()
		if !ok {
			return wires, true
		}
		labelsEnd, together, samples := 0, true, false
		for rest := series; len(rest) > 0; {
			start := len(series) - len(rest)
			if rest, err = sfc.NextField(rest); err != nil {
				return wires, true
			}
			if !numbered(sfc.FieldNum) {
				return wires, true
			}
			if sfc.FieldNum == 1 || sfc.FieldNum == 2 {
				if m, ok := sfc.MessageData(); ok && !numberedFields(m) {
					return wires, true
				}
			}
			switch sfc.FieldNum {
			case 1:
				if labelsEnd == start {
					labelsEnd = len(series) - len(rest)
				} else {
					together = false
				}
			case 2:
				samples = true
			case 3, 4:
				return wires, true
			}
		}
		if !samples {
			continue // VictoriaMetrics' unmarshaler returns no series for it
		}
		var wire []byte
		if together && labelsEnd > 0 {
			wire = series[:labelsEnd]
		}
		wires = append(wires, wire)
	}
	return wires, false
}

// numbered tells whether the generated code accepts a field number: it
// reads the number as an int32 and refuses 0 and below; easyproto reads a
// uint32 and lets the unmarshaler skip the field as unknown.
func numbered(n uint32) bool { return n != 0 && n <= math.MaxInt32 }

// numberedFields tells whether every field of a label, sample or metadata
// message has a number the generated code accepts. It runs on every label
// and sample of a request, so the tags every sender writes (one byte:
// field 1 or 2, a string, a double or a varint) are walked by hand;
// anything else goes through easyproto. A message whose fields cannot be
// delimited passes: VictoriaMetrics' unmarshaler refuses it, and the
// generated code then decodes the request.
func numberedFields(msg []byte) bool {
	for i := 0; i < len(msg); {
		tag := msg[i]
		if tag < 8 || tag >= 0x80 {
			return numberedFieldsSlow(msg[i:])
		}
		i++
		switch tag & 7 {
		case 0: // varint
			for i < len(msg) && msg[i] >= 0x80 {
				i++
			}
			i++
		case 1: // 64-bit
			i += 8
		case 2: // length-delimited, short
			if i >= len(msg) || msg[i] >= 0x80 {
				return numberedFieldsSlow(msg[i-1:])
			}
			i += 1 + int(msg[i])
		case 5: // 32-bit
			i += 4
		default:
			return numberedFieldsSlow(msg[i-1:])
		}
	}
	return true
}

func numberedFieldsSlow(msg []byte) bool {
	var fc easyproto.FieldContext
	var err error
	for len(msg) > 0 {
		if msg, err = fc.NextField(msg); err != nil {
			return true
		}
		if !numbered(fc.FieldNum) {
			return false
		}
	}
	return true
}

// within tells whether the string s lies in the bytes b: that the labels
// VictoriaMetrics' unmarshaler returned for a series come from the label
// fields scanV1 found for it. Pointers are compared, nothing is read.
func within(s string, b []byte) bool {
	if len(s) == 0 || len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
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
