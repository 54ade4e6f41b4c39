package export

import (
	"encoding/csv"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/metergate/metergate/pkg/localday"
)

// Format is how the CSV is written: what the ingesting platform expects by
// default (';' separator, no BOM), with the two switches it may ask for.
type Format struct {
	Comma rune // ';' (default) or ','
	BOM   bool // start with U+FEFF, for spreadsheet software that needs it
}

func (f Format) comma() rune {
	if f.Comma == 0 {
		return ';'
	}
	return f.Comma
}

// Masks written in the masque column: why a row has no value.
const (
	// MaskHidden: the gate computed the value and hid it (too few
	// contributing RMPs, a small Venn cell, or one RMP dominating the sum).
	// Like the gate's warning, it never says which, nor how many RMPs.
	MaskHidden = "secret_statistique"
	// MaskAbsent: no RMP contributed data to this point (a gap in the
	// meters' readings, never zero).
	MaskAbsent = "absente"
)

// rowWriter writes records with encoding/csv (RFC 4180 quoting) and
// neutralises text cells against formula injection.
type rowWriter struct {
	w    *csv.Writer
	rows int
}

func newRowWriter(w io.Writer, f Format) (*rowWriter, error) {
	if f.BOM {
		if _, err := io.WriteString(w, "\uFEFF"); err != nil {
			return nil, err
		}
	}
	cw := csv.NewWriter(w)
	cw.Comma = f.comma()
	// CRLF as RFC 4180 says: the platform and spreadsheets expect it.
	cw.UseCRLF = true
	return &rowWriter{w: cw}, nil
}

func (r *rowWriter) write(record []string) error {
	r.rows++
	return r.w.Write(record)
}

func (r *rowWriter) flush() error {
	r.w.Flush()
	return r.w.Error()
}

// Text neutralises a text cell: a spreadsheet evaluates a cell beginning
// with = + - @ (and, in some, tab or CR) as a formula, so such a cell gets
// a leading apostrophe (OWASP's advice). Numbers are written by the
// exporter itself (strconv) and never pass here, so a negative value stays
// a number.
func Text(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// number writes a value with '.' as decimal separator and no exponent, the
// shortest form that reads back to the same float64.
func number(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	if v == 0 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Horodate writes an instant in ISO-8601 with the Europe/Paris offset of
// that instant (+01:00 in winter, +02:00 in summer).
func Horodate(t time.Time) string { return t.In(localday.Paris).Format("2006-01-02T15:04:05-07:00") }

// ParseComma reads the sep parameter.
func ParseComma(s string) (rune, bool) {
	switch s {
	case "", ";":
		return ';', true
	case ",":
		return ',', true
	}
	return 0, false
}
