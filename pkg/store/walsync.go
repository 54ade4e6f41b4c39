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
	err     error // of the last finished sync

	// Owned by the one running sync.
	newest map[string]string    // dir → the newest segment at its last sync
	synced map[string]fileState // segment → what it was when its last fsync began
}

// fileState is what a segment looked like. Segments only grow, by
// write(2) from the TSDB's commits: a segment that looks as it did when an
// fsync began holds nothing that fsync did not cover.
type fileState struct {
	size  int64
	mtime int64
}

// NewWALSyncer syncs the write-ahead logs of the TSDB in dir.
func NewWALSyncer(dir string) *WALSyncer {
	s := &WALSyncer{dirs: []string{filepath.Join(dir, "wal"), filepath.Join(dir, "wbl")}, fsync: fsyncPath, newest: map[string]string{}, synced: map[string]fileState{}}
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
// in the background) that changed since their last fsync, all at once,
// and the log's directory when its newest segment is new, so that the
// segment's name survives too.
//
// An fsync costs about 0.26 ms with data to write and 0.05 ms without on
// the machine of docs/performance.md. Skipping the segments that did not
// change, most often the WBL's and the previous WAL segment, and running
// the others in parallel is what keeps the sync short.
func (s *WALSyncer) syncLogs() error {
	var dirty []string
	var states []fileState
	newDirs := map[string]string{} // dir → its new newest segment
	for _, dir := range s.dirs {
		segs, err := segments(dir)
		if err != nil {
			return err
		}
		if len(segs) == 0 {
			continue
		}
		recent := segs[max(0, len(segs)-2):]
		for _, seg := range recent {
			path := filepath.Join(dir, seg)
			info, err := os.Stat(path)
			if errors.Is(err, fs.ErrNotExist) {
				// Truncated away meanwhile: its samples are in a
				// checkpoint or a block, fsynced.
				continue
			}
			if err != nil {
				return fmt.Errorf("syncing the write-ahead log: %w", err)
			}
			st := fileState{size: info.Size(), mtime: info.ModTime().UnixNano()}
			if prev, ok := s.synced[path]; ok && prev == st {
				continue
			}
			dirty, states = append(dirty, path), append(states, st)
		}
		if newest := segs[len(segs)-1]; s.newest[dir] != newest {
			newDirs[dir] = newest
		}
		s.forget(dir, recent)
	}
	errs := make([]error, len(dirty))
	fsync := func(i int) {
		if err := s.fsync(dirty[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs[i] = fmt.Errorf("syncing the write-ahead log: %w", err)
		}
	}
	var wg sync.WaitGroup
	for i := 1; i < len(dirty); i++ {
		wg.Go(func() { fsync(i) })
	}
	if len(dirty) > 0 {
		fsync(0) // most often the only one: the WAL's newest segment
	}
	wg.Wait()
	for i, path := range dirty {
		if errs[i] == nil {
			s.synced[path] = states[i]
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The segments' names, after their data: a name that survives points
	// at data that does. A segment created since the listing is not
	// recorded as synced: the next sync fsyncs the directory again.
	for _, dir := range s.dirs {
		newest, ok := newDirs[dir]
		if !ok {
			continue
		}
		if err := s.fsync(dir); err != nil {
			return fmt.Errorf("syncing the write-ahead log's directory: %w", err)
		}
		s.newest[dir] = newest
	}
	return nil
}

// forget drops what is known of the segments of dir that are no longer
// among the recent ones.
func (s *WALSyncer) forget(dir string, recent []string) {
	for path := range s.synced {
		if filepath.Dir(path) == dir && !slices.Contains(recent, filepath.Base(path)) {
			delete(s.synced, path)
		}
	}
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
