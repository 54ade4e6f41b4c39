package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// WALSyncer makes what a commit wrote to the write-ahead logs durable
// against a power loss or a kernel crash, not only against a crash of the
// process. Prometheus's TSDB writes each commit to the WAL (and
// out-of-order samples to the WBL) with write(2) and calls fsync(2) only
// when a segment is full; until then an acknowledged sample lives in the
// kernel's page cache. Sync fsyncs the segments being written, and the
// directories when a new segment appeared, before the remote-write handler
// answers.
//
// Syncs are grouped: a call waits for a sync that started after it was
// called, and one sync serves every call that arrived while the previous
// one ran, so that concurrent requests share their fsyncs (about 0.3 ms
// each on the machine of docs/reliability.md).
type WALSyncer struct {
	dirs  []string                // wal, wbl
	fsync func(path string) error // os.File.Sync by default; tests count calls

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // syncs started
	done    uint64 // syncs finished
	running bool
	err     error             // of the last finished sync
	newest  map[string]string // dir → the newest segment at its last sync
}

// NewWALSyncer syncs the write-ahead logs of the TSDB in dir.
func NewWALSyncer(dir string) *WALSyncer {
	s := &WALSyncer{dirs: []string{filepath.Join(dir, "wal"), filepath.Join(dir, "wbl")}, fsync: fsyncPath, newest: map[string]string{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Sync returns once a sync that started after the call has finished, with
// its error.
func (s *WALSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A sync running now may have begun before the caller's write
	// reached the page cache: the caller needs the next one.
	need := s.started + 1
	for s.done < need {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		n := s.started
		s.mu.Unlock()
		err := s.syncLogs()
		s.mu.Lock()
		s.running, s.done, s.err = false, n, err
		s.cond.Broadcast()
	}
	return s.err
}

// syncLogs fsyncs the two newest segments of each log (the previous one
// may have been cut after the caller's write and be fsynced by the TSDB
// in the background), and the log's directory when its newest segment is
// new, so that the segment's name survives too.
func (s *WALSyncer) syncLogs() error {
	for _, dir := range s.dirs {
		segs, err := segments(dir)
		if err != nil {
			return err
		}
		if len(segs) == 0 {
			continue
		}
		for _, seg := range segs[max(0, len(segs)-2):] {
			// The older one may have been truncated away meanwhile: its
			// samples are in a checkpoint or a block, fsynced.
			if err := s.fsync(filepath.Join(dir, seg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("syncing the write-ahead log: %w", err)
			}
		}
		newest := segs[len(segs)-1]
		if s.newest[dir] != newest {
			if err := s.fsync(dir); err != nil {
				return fmt.Errorf("syncing the write-ahead log's directory: %w", err)
			}
			s.newest[dir] = newest
		}
	}
	return nil
}

// segments lists the segment files of a write-ahead log directory (named by
// their number), in increasing order; none if the directory does not exist.
func segments(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the write-ahead log: %w", err)
	}
	var segs []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil && e.Type().IsRegular() {
			segs = append(segs, e.Name())
		}
	}
	slices.SortFunc(segs, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return segs, nil
}

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
