package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/metergate/metergate/pkg/district"
	"github.com/metergate/metergate/pkg/registry"
	st "github.com/metergate/metergate/remote/server/servertest"
)

// killWork is the load of TestRepeatedSIGKILL: ten days of the district's
// daily readings (every meter, 48 points a day), so ten times its daily
// volume, cut in batches of blockMeters meters × one day.
type killWork struct {
	base    time.Time
	blocks  int // meter blocks
	days    int
	mu      sync.Mutex
	pending [][]int // per sender, items (block*days + day) not yet acknowledged, in order
	shared  bool    // one queue, any sender takes any item
	acked   []bool
	sent    int // samples acknowledged, retries included
}

const (
	senders      = 4
	blockMeters  = 40
	pointsPerDay = 48
)

// take is sender g's next item. As with Prometheus's shards, every series
// has one sender, which delivers its days in order and retries a batch
// until it is acknowledged before it sends the next.
func (w *killWork) take(g int) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.shared {
		if len(w.pending[0]) == 0 {
			return -1, false
		}
		item := w.pending[0][0]
		w.pending[0] = w.pending[0][1:]
		return item, true
	}
	if len(w.pending[g]) == 0 {
		// Everything is in: keep the load on by resending the sender's
		// last item (identical samples are accepted again).
		return -1, false
	}
	return w.pending[g][0], true
}

func (w *killWork) done(g, item int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.shared {
		if ok {
			w.acked[item] = true
			w.sent += blockMeters * pointsPerDay
		} else if !w.acked[item] {
			w.pending[0] = append(w.pending[0], item) // retried later
		}
		return
	}
	if ok {
		w.acked[item] = true
		w.sent += blockMeters * pointsPerDay
		if len(w.pending[g]) > 0 && w.pending[g][0] == item {
			w.pending[g] = w.pending[g][1:]
		}
	}
}

func rmpOf(meter int) string { return fmt.Sprintf("5%013d", meter) }

// minute is the timestamp of a day's point: ten days fit in the last hours,
// inside the out-of-order window, a minute apart.
func (w *killWork) at(day, point int) time.Time {
	return w.base.Add(time.Duration(day*pointsPerDay+point) * time.Minute)
}

func (w *killWork) body(t *testing.T, item int) []byte {
	block, day := item/w.days, item%w.days
	series := make([]st.Series, 0, blockMeters)
	for m := block * blockMeters; m < (block+1)*blockMeters; m++ {
		s := st.Series{Labels: labels.FromStrings("__name__", "linky_index_wh", "rmp", rmpOf(m))}
		for p := range pointsPerDay {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: w.at(day, p).UnixMilli(), Value: float64(day*pointsPerDay + p)})
		}
		series = append(series, s)
	}
	return st.EncodeV1(t, series)
}

// A server SIGKILLed again and again at random moments while senders
// deliver ten days of the district keeps every acknowledged sample; the
// senders retry what was not acknowledged, as Prometheus's do.
// METERGATE_LONG=1 runs 200 kills instead of 20 in each mode;
// METERGATE_KEEP=dir keeps the data of a failed run for promtool tsdb dump.
//
// "sharded": each series has one sender (as with Prometheus's and vmagent's
// shards). "shared": any sender takes any batch, so days of one series are
// written at once by several requests: it lost acknowledged samples in
// every run until the commits of one series were ordered and two TSDB
// replay defects worked around (docs/reliability.md, "SIGKILL with several
// writers per series").
func TestRepeatedSIGKILL(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "sharded"
		if shared {
			name = "shared"
		}
		t.Run(name, func(t *testing.T) { repeatedSIGKILL(t, shared) })
	}
}

func repeatedSIGKILL(t *testing.T, shared bool) {
	kills, budget := 20, 60*time.Second
	if os.Getenv("METERGATE_LONG") != "" {
		kills, budget = 200, 20*time.Minute
	}
	dir := t.TempDir()
	writeServerDir(t, dir, &registry.Registry{})
	blocks := district.TotalMeters / blockMeters
	w := &killWork{base: time.Now().Add(-9 * time.Hour).Truncate(time.Minute), blocks: blocks, days: 10}
	w.acked = make([]bool, blocks*w.days)
	w.pending = make([][]int, senders)
	w.shared = shared
	for block := range blocks {
		g := block % senders
		if w.shared {
			g = 0
		}
		for day := range w.days {
			w.pending[g] = append(w.pending[g], block*w.days+day)
		}
	}
	began := time.Now()
	perCycle := budget / time.Duration(kills)
	for k := range kills {
		p := startProcess(t, dir)
		var wg sync.WaitGroup
		for g := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				last := g * w.days // the sender's first item
				for {
					item, fresh := w.take(g)
					if !fresh {
						item = last
					}
					code, err := post(p.URL, w.body(t, item))
					ok := err == nil && code == http.StatusNoContent
					w.done(g, item, ok)
					if !ok {
						return // the server is gone
					}
					last = item
				}
			}()
		}
		// A random moment of the cycle's share of the budget, after the
		// start-up it took.
		left := perCycle - time.Since(began)/time.Duration(k+1)
		time.Sleep(time.Duration(rand.Int64N(int64(max(left, 300*time.Millisecond)))) + 100*time.Millisecond)
		p.kill()
		wg.Wait()
	}
	acked := 0
	for _, a := range w.acked {
		if a {
			acked++
		}
	}
	t.Logf("%d SIGKILLs in %s; %d of %d batches acknowledged (%d samples of %d meters × %d days; %d samples sent with resends)",
		kills, time.Since(began).Round(time.Second), acked, len(w.acked), acked*blockMeters*pointsPerDay, blocks*blockMeters, w.days, w.sent)
	require.Positive(t, acked)

	p := startProcess(t, dir)
	// Every loss is listed, not only the first: its shape (a whole series,
	// a meter-day, the tail of a day) tells the cause.
	var lost []string
	lostSamples := 0
	for day := range w.days {
		end := w.at(day, pointsPerDay-1)
		counts := perMeter(t, p.URL, fmt.Sprintf("count_over_time(linky_index_wh[%dm])", pointsPerDay), end)
		sums := perMeter(t, p.URL, fmt.Sprintf("sum_over_time(linky_index_wh[%dm])", pointsPerDay), end)
		wantSum := fmt.Sprint(pointsPerDay*pointsPerDay*day + pointsPerDay*(pointsPerDay-1)/2)
		for block := range blocks {
			if !w.acked[block*w.days+day] {
				continue
			}
			for m := block * blockMeters; m < (block+1)*blockMeters; m++ {
				count, sum := counts[rmpOf(m)], sums[rmpOf(m)]
				if count == fmt.Sprint(pointsPerDay) && sum == wantSum {
					continue
				}
				n, _ := strconv.Atoi(count)
				lostSamples += pointsPerDay - n
				if len(lost) < 20 {
					_, r := st.Query(t, p.URL, st.OperatorToken, fmt.Sprintf(`linky_index_wh{rmp="%s"}[%dm]`, rmpOf(m), pointsPerDay), end)
					lost = append(lost, fmt.Sprintf("meter %d day %d: %q samples, sum %q (want %s): %v", m, day, count, sum, wantSum, r.Data.Result))
				} else {
					lost = append(lost, fmt.Sprintf("meter %d day %d: %q samples", m, day, count))
				}
			}
		}
	}
	if len(lost) > 0 {
		for _, l := range lost[:min(len(lost), 40)] {
			t.Log(l)
		}
		if keep := os.Getenv("METERGATE_KEEP"); keep != "" {
			p.kill()
			_ = exec.Command("cp", "-a", dir, keep).Run()
			t.Logf("data kept in %s", keep)
		}
		t.Fatalf("%d acknowledged meter-days lost or changed (%d samples missing)", len(lost), lostSamples)
	}
	p.terminate(t)
}

func perMeter(t *testing.T, url, q string, at time.Time) map[string]string {
	t.Helper()
	code, r := st.Query(t, url, st.OperatorToken, q, at)
	require.Equal(t, http.StatusOK, code, r.Error)
	out := make(map[string]string, len(r.Data.Result))
	for _, s := range r.Data.Result {
		out[s.Metric["rmp"]] = s.Value[1].(string)
	}
	return out
}
