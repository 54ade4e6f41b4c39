package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/prometheus/prometheus/prompb"
)

// A remote-write 1.0 WriteRequest decoded in place, one TimeSeries at a
// time, without materialising the request: label names and values stay
// sub-slices of the decompressed body, samples go into a slice reused from
// series to series. On the live shape every series of a request carries one
// sample, so prompb.WriteRequest.Unmarshal allocated a TimeSeries, its
// Label and Sample slices and two strings per label for every sample: a
// quarter of the CPU of the write path and most of its allocations
// (docs/performance.md).
//
// The decoder accepts and refuses exactly what the generated
// prompb.WriteRequest.Unmarshal (gogo/protobuf) accepts and refuses, since
// Prometheus's write handler, whose status codes senders rely on, answers
// 400 for what that refuses: the same varint rules (up to ten bytes, bits
// past 64 dropped), the same length checks, unknown fields skipped the same
// way, a known field with another wire type refused, the last occurrence of
// a scalar field winning. FuzzDecodeV1 compares the two. Exemplars,
// histograms and metadata, rare on the wire, are handed to the generated
// code itself.

var (
	errIntOverflow   = errors.New("proto: integer overflow")
	errInvalidLength = errors.New("proto: negative length found during unmarshaling")
	errEndOfGroup    = errors.New("proto: unexpected end of group")
)

// wireError marks a body that is not a WriteRequest: 400, whatever else
// happened while it was being decoded.
type wireError struct{ err error }

func (e *wireError) Error() string { return "decoding remote-write 1.0 request: " + e.err.Error() }
func (e *wireError) Unwrap() error { return e.err }

const (
	wireVarint = 0
	wireI64    = 1
	wireBytes  = 2
	wireStart  = 3
	wireEnd    = 4
	wireI32    = 5
)

type rawLabel struct{ name, value []byte }

type rawSample struct {
	t int64
	v float64
}

// v1Series is one decoded TimeSeries; its slices are reused for the next.
type v1Series struct {
	labels     []rawLabel
	samples    []rawSample
	exemplars  []prompb.Exemplar
	histograms []prompb.Histogram

	// wire is the label fields as sent when they come first and together
	// (as every sender encodes them), nil otherwise; known is what the
	// decoder's caller said about them (seenWire), in which case labels
	// is left empty.
	wire      []byte
	known     *validSeries
	rawLabels [][]byte
}

func (s *v1Series) reset() {
	s.labels = s.labels[:0]
	s.rawLabels = s.rawLabels[:0]
	s.wire, s.known = nil, nil
	s.samples = s.samples[:0]
	// The generated Unmarshal merges into what it is given: old entries
	// must not leak into the next series.
	clear(s.exemplars)
	s.exemplars = s.exemplars[:0]
	clear(s.histograms)
	s.histograms = s.histograms[:0]
}

// seenWire tells the decoder whether the label fields of a series, exactly
// as sent, were decoded and found valid before, and to what; the decoder
// then does not decode them again.
type seenWire func(wire []byte) *validSeries

// decodeV1 calls f with each TimeSeries of the WriteRequest in b, in order.
// A wire error anywhere in b is returned as a *wireError, even after f
// failed: the decoding goes on to the end without calling f again, so that
// a malformed body is refused as such (400), as when the whole body was
// decoded before anything was appended. Otherwise the first error of f is
// returned.
func decodeV1(b []byte, s *v1Series, seen seenWire, f func(*v1Series) error) error {
	var ferr error
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i)
		if err != nil {
			return &wireError{err}
		}
		switch field {
		case 1, 3: // timeseries, metadata
			if typ != wireBytes {
				return &wireError{fmt.Errorf("proto: wrong wireType = %d for field %d of WriteRequest", typ, field)}
			}
			msg, end, err := lengthDelimited(b, next)
			if err != nil {
				return &wireError{err}
			}
			if field == 3 {
				// Metadata is not stored; it must decode all the same.
				var md prompb.MetricMetadata
				if err := md.Unmarshal(msg); err != nil {
					return &wireError{err}
				}
			} else {
				s.reset()
				if err := decodeSeries(msg, s, seen); err != nil {
					return &wireError{err}
				}
				if ferr == nil {
					ferr = f(s)
				}
			}
			i = end
		default:
			if i, err = skip(b, i); err != nil {
				return &wireError{err}
			}
		}
	}
	return ferr
}

func decodeSeries(b []byte, s *v1Series, seen seenWire) error {
	// Label fields from the start of b up to wireEnd, and none after.
	wireEnd, together := 0, true
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i)
		if err != nil {
			return err
		}
		if field < 1 || field > 4 {
			if i, err = skip(b, i); err != nil {
				return err
			}
			continue
		}
		if typ != wireBytes {
			return fmt.Errorf("proto: wrong wireType = %d for field %d of TimeSeries", typ, field)
		}
		msg, end, err := lengthDelimited(b, next)
		if err != nil {
			return err
		}
		if field == 1 {
			if wireEnd == i {
				wireEnd = end
			} else {
				together = false
			}
		}
		switch field {
		case 1:
			// Decoded below, unless they were seen before as they are.
			s.rawLabels = append(s.rawLabels, msg)
		case 2:
			var x rawSample
			if err := decodeSample(msg, &x); err != nil {
				return err
			}
			s.samples = append(s.samples, x)
		case 3:
			s.exemplars = append(s.exemplars, prompb.Exemplar{})
			if err := s.exemplars[len(s.exemplars)-1].Unmarshal(msg); err != nil {
				return err
			}
		case 4:
			s.histograms = append(s.histograms, prompb.Histogram{})
			if err := s.histograms[len(s.histograms)-1].Unmarshal(msg); err != nil {
				return err
			}
		}
		i = end
	}
	if together && wireEnd > 0 {
		s.wire = b[:wireEnd]
		if seen != nil {
			// The same bytes decode to the same labels: those found valid
			// before.
			if s.known = seen(s.wire); s.known != nil {
				return nil
			}
		}
	}
	for _, msg := range s.rawLabels {
		var l rawLabel
		if err := decodeLabel(msg, &l); err != nil {
			return err
		}
		s.labels = append(s.labels, l)
	}
	return nil
}

func decodeLabel(b []byte, l *rawLabel) error {
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i)
		if err != nil {
			return err
		}
		if field != 1 && field != 2 {
			if i, err = skip(b, i); err != nil {
				return err
			}
			continue
		}
		if typ != wireBytes {
			return fmt.Errorf("proto: wrong wireType = %d for field %d of Label", typ, field)
		}
		v, end, err := lengthDelimited(b, next)
		if err != nil {
			return err
		}
		if field == 1 {
			l.name = v
		} else {
			l.value = v
		}
		i = end
	}
	return nil
}

func decodeSample(b []byte, x *rawSample) error {
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i)
		if err != nil {
			return err
		}
		switch field {
		case 1:
			if typ != wireI64 {
				return fmt.Errorf("proto: wrong wireType = %d for field Value", typ)
			}
			if next+8 > len(b) {
				return io.ErrUnexpectedEOF
			}
			x.v = math.Float64frombits(binary.LittleEndian.Uint64(b[next:]))
			i = next + 8
		case 2:
			if typ != wireVarint {
				return fmt.Errorf("proto: wrong wireType = %d for field Timestamp", typ)
			}
			v, end, err := varint(b, next)
			if err != nil {
				return err
			}
			x.t = int64(v)
			i = end
		default:
			if i, err = skip(b, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// varint reads the varint at b[i:] and returns it with the index past it.
// Like the generated code, it reads at most ten bytes and drops the bits
// past 64 rather than refusing them.
func varint(b []byte, i int) (uint64, int, error) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, nil
	}
	var x uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, 0, errIntOverflow
		}
		if i >= len(b) {
			return 0, 0, io.ErrUnexpectedEOF
		}
		c := b[i]
		i++
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, i, nil
		}
	}
}

// tag reads the field key at b[i:]. A field number the generated code
// reads as 0 or negative (it keeps 32 bits), and an end of group outside a
// group, are errors there and here.
func tag(b []byte, i int) (field int32, typ int, next int, err error) {
	key, next, err := varint(b, i)
	if err != nil {
		return 0, 0, 0, err
	}
	field, typ = int32(key>>3), int(key&7)
	if typ == wireEnd {
		return 0, 0, 0, errors.New("proto: wiretype end group for non-group")
	}
	if field <= 0 {
		return 0, 0, 0, fmt.Errorf("proto: illegal tag %d (wire type %d)", field, key)
	}
	return field, typ, next, nil
}

// lengthDelimited returns the bytes of the length-prefixed value at b[i:]
// and the index past them.
func lengthDelimited(b []byte, i int) ([]byte, int, error) {
	n, i, err := varint(b, i)
	if err != nil {
		return nil, 0, err
	}
	l := int(n)
	if l < 0 {
		return nil, 0, errInvalidLength
	}
	end := i + l
	if end < 0 {
		return nil, 0, errInvalidLength
	}
	if end > len(b) {
		return nil, 0, io.ErrUnexpectedEOF
	}
	return b[i:end], end, nil
}

// skip returns the index past the unknown field whose key is at b[i:],
// groups included, with the generated code's checks.
func skip(b []byte, i int) (int, error) {
	depth := 0
	for j := i; j < len(b); {
		key, next, err := varint(b, j)
		if err != nil {
			return 0, err
		}
		j = next
		switch key & 7 {
		case wireVarint:
			for shift := uint(0); ; shift += 7 {
				if shift >= 64 {
					return 0, errIntOverflow
				}
				if j >= len(b) {
					return 0, io.ErrUnexpectedEOF
				}
				j++
				if b[j-1] < 0x80 {
					break
				}
			}
		case wireI64:
			j += 8
		case wireBytes:
			n, next, err := varint(b, j)
			if err != nil {
				return 0, err
			}
			l := int(n)
			if l < 0 {
				return 0, errInvalidLength
			}
			j = next + l
		case wireStart:
			depth++
		case wireEnd:
			if depth == 0 {
				return 0, errEndOfGroup
			}
			depth--
		case wireI32:
			j += 4
		default:
			return 0, fmt.Errorf("proto: illegal wireType %d", key&7)
		}
		if j < 0 {
			return 0, errInvalidLength
		}
		if depth == 0 {
			if j > len(b) {
				return 0, io.ErrUnexpectedEOF
			}
			return j, nil
		}
	}
	return 0, io.ErrUnexpectedEOF
}
