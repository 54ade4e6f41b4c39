package ingest

import (
	"sync"
	"time"
)

// SeriesLimiter bounds the new series each sender creates per UTC day. A
// series is new if the server has not seen it before (Seed tells it the
// series already stored). It protects the TSDB head, whose memory grows with
// the number of series, from a broken or hostile sender that invents labels;
// a district's meters keep their series, so a healthy sender creates few.
type SeriesLimiter struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	known   map[uint64]struct{} // hashes of the label sets seen
	day     string              // the UTC day created counts
	created map[string]int      // sender -> new series today
}

// NewSeriesLimiter allows max new series per sender per day; now is the
// clock (nil: time.Now).
func NewSeriesLimiter(max int, now func() time.Time) *SeriesLimiter {
	if now == nil {
		now = time.Now
	}
	return &SeriesLimiter{max: max, now: now, known: map[uint64]struct{}{}, created: map[string]int{}}
}

// Max is the number of new series a sender may create per day.
func (l *SeriesLimiter) Max() int { return l.max }

// Seed records a series that storage already holds.
func (l *SeriesLimiter) Seed(hash uint64) {
	l.mu.Lock()
	l.known[hash] = struct{}{}
	l.mu.Unlock()
}

// Admit reports whether sender may write the series whose labels hash to
// hash: a known series always, a new one while the sender's quota of the
// day lasts. An admitted series is known from then on, even if its commit
// fails: its retry does not count twice. A request rolled back (refused as
// a whole) gives its new series back with Release.
func (l *SeriesLimiter) Admit(sender string, hash uint64) (admitted, isNew bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.known[hash]; ok {
		return true, false
	}
	if day := l.now().UTC().Format(time.DateOnly); day != l.day {
		l.day = day
		clear(l.created)
	}
	if l.created[sender] >= l.max {
		return false, true
	}
	l.created[sender]++
	l.known[hash] = struct{}{}
	return true, true
}

// Release forgets new series that Admit let sender create, for a request
// that was rolled back: they were not stored.
func (l *SeriesLimiter) Release(sender string, hashes []uint64) {
	if len(hashes) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range hashes {
		delete(l.known, h)
	}
	l.created[sender] = max(0, l.created[sender]-len(hashes))
}
