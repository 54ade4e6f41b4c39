// Package audit keeps the durable record of every decision of the privacy
// gate: one JSON line per decision, fsync'd before the answer leaves, each
// line carrying the SHA-256 of the line before it so that a removed or edited
// line is detected by Verify.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Decisions recorded in Record.Decision.
const (
	Allowed = "allowed"
	Refused = "refused"
)

// Record is one decision of the gate.
type Record struct {
	Time     time.Time `json:"time"`
	Caller   string    `json:"caller"`
	Audience string    `json:"audience"`
	UseCases []string  `json:"use_cases,omitempty"`
	Query    string    `json:"query"`
	// Start, End and Step describe the evaluation; Start == End for an
	// instant query.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Step  string    `json:"step,omitempty"`
	// Perimeters the query addressed.
	Perimeters []string `json:"perimeters,omitempty"`
	// MinSet is the smallest number of contributing RMPs of a published
	// point, SetSizes the contributing RMPs of every evaluated aggregate
	// point (published or not), for the privacy officer.
	MinSet   int    `json:"min_set,omitempty"`
	SetSizes []int  `json:"set_sizes,omitempty"`
	Decision string `json:"decision"`
	// Rule names the policy rule that refused the query or suppressed a
	// point; Detail says why in words. Neither ever reaches the caller.
	Rule       string   `json:"rule,omitempty"`
	Detail     string   `json:"detail,omitempty"`
	Suppressed []string `json:"suppressed,omitempty"`
	Rows       int      `json:"rows"`
	// Prev is the hex SHA-256 of the previous line ("" for the first).
	Prev string `json:"prev"`
}

// Log is an append-only, hash-chained audit file.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	prev string
	size int64 // bytes of complete records: a failed append is cut back to it

	decisions  *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	failures   prometheus.Counter

	// TruncatedTail is the size of an unfinished last record Open cut off.
	TruncatedTail int64
}

// Open opens (or creates) the log at path and resumes its chain. reg may be
// nil; otherwise the log's counters are registered on it.
//
// A last record without its newline was being written when the process died
// (or the disk filled): its answer was never released, since Append returns
// only once the whole line is synced. Open cuts it off and says so in
// TruncatedTail; any other break of the chain is an error.
func Open(path string, reg prometheus.Registerer) (*Log, error) {
	prev, _, size, err := scan(path)
	var tail int64
	switch {
	case errors.Is(err, errTruncated):
		st, serr := os.Stat(path)
		if serr != nil {
			return nil, fmt.Errorf("opening audit log: %w", serr)
		}
		tail = st.Size() - size
		if terr := os.Truncate(path, size); terr != nil {
			return nil, fmt.Errorf("opening audit log: cutting an unfinished record: %w", terr)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	l := &Log{
		f:             f,
		prev:          prev,
		size:          size,
		TruncatedTail: tail,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metergate_gate_decisions_total",
			Help: "Decisions of the privacy gate by audience, decision and refusing rule.",
		}, []string{"audience", "decision", "rule"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metergate_gate_suppressed_points_total",
			Help: "Points the privacy gate computed but did not publish, by audience and rule.",
		}, []string{"audience", "rule"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metergate_audit_write_failures_total",
			Help: "Audit records that could not be written; the gate refuses the query then.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.decisions, l.suppressed, l.failures} {
			if err := reg.Register(c); err != nil {
				f.Close()
				return nil, fmt.Errorf("registering audit metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Append writes r durably (written and fsync'd) and counts it. A caller must
// not release an answer whose record failed to be written.
func (l *Log) Append(r Record) error { return l.AppendBatch([]Record{r}) }

// AppendBatch writes rs durably, in order, with one write and one fsync
// (group commit): a caller that answers several queries at once (an export
// slice) pays one sync instead of one per query. The records are chained
// exactly as if appended one by one. On failure none of them is kept (a
// partial write is cut back), and the caller must release none of the
// answers.
func (l *Log) AppendBatch(rs []Record) error {
	if len(rs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf []byte
	prev := l.prev
	for i := range rs {
		r := rs[i]
		if r.Time.IsZero() {
			r.Time = time.Now()
		}
		r.Time = r.Time.UTC()
		r.Prev = prev
		line, err := json.Marshal(r)
		if err != nil {
			l.failures.Add(float64(len(rs)))
			return fmt.Errorf("encoding audit record: %w", err)
		}
		prev = digest(line)
		buf = append(append(buf, line...), '\n')
	}
	if _, err := l.f.Write(buf); err != nil {
		l.failures.Add(float64(len(rs)))
		return errors.Join(fmt.Errorf("writing audit records: %w", err), l.cutBack())
	}
	if err := l.f.Sync(); err != nil {
		l.failures.Add(float64(len(rs)))
		return errors.Join(fmt.Errorf("syncing audit log: %w", err), l.cutBack())
	}
	l.size += int64(len(buf))
	l.prev = prev
	for i := range rs {
		l.decisions.WithLabelValues(rs[i].Audience, rs[i].Decision, rs[i].Rule).Inc()
		for _, rule := range rs[i].Suppressed {
			l.suppressed.WithLabelValues(rs[i].Audience, rule).Inc()
		}
	}
	return nil
}

// cutBack removes what a failed append may have written (part of a line, on
// a full disk), so that the next record follows a complete one and the
// chain stays verifiable.
func (l *Log) cutBack() error {
	if err := l.f.Truncate(l.size); err != nil {
		return fmt.Errorf("cutting back a failed audit record: %w", err)
	}
	return nil
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// Verify reads the log at path and checks its chain. It returns the number
// of records, and an error naming the first line that breaks the chain.
func Verify(path string) (int, error) {
	_, n, _, err := scan(path)
	return n, err
}

// errTruncated marks a last record without its newline.
var errTruncated = errors.New("truncated record (no newline)")

func digest(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// scan walks the file checking each line's Prev against the previous line,
// and returns the digest of the last line and the size of the good records.
func scan(path string) (last string, n int, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, 0, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return last, n, size, fmt.Errorf("%s:%d: %w", path, n+1, errTruncated)
			}
			return last, n, size, nil
		}
		if err != nil {
			return last, n, size, fmt.Errorf("reading %s: %w", path, err)
		}
		lineSize := int64(len(line))
		line = bytes.TrimSuffix(line, []byte("\n"))
		var r struct {
			Prev *string `json:"prev"`
		}
		if err := json.Unmarshal(line, &r); err != nil || r.Prev == nil {
			return last, n, size, fmt.Errorf("%s:%d: not an audit record", path, n+1)
		}
		if *r.Prev != last {
			return last, n, size, fmt.Errorf("%s:%d: chain broken: prev %.12s… does not match the previous line's digest %.12s…", path, n+1, *r.Prev, last)
		}
		last = digest(line)
		size += lineSize
		n++
	}
}
