package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/metergate/metergate/pkg/registry"
)

// snapshotter is the storage that can copy itself for a backup: the
// embedded TSDB does (tsdb.DB.Snapshot).
type snapshotter interface {
	Snapshot(dir string, withHead bool) error
}

// serveSnapshot answers POST /api/v1/admin/snapshot, operators only: it
// writes a consistent copy of the TSDB (the head included, so every
// acknowledged sample) under <data_dir>/snapshots/<name> and answers its
// name, as Prometheus does. The copy hard-links the immutable blocks, so it
// is quick and small until they are compacted away; an operator moves it to
// other storage. To restore, start a server with data_dir set to the copy
// (docs/reliability.md).
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	c := CallerOf(r)
	if c == nil || c.Audience != registry.Operator {
		writeAPIJSON(w, http.StatusForbidden, map[string]any{"status": "error", "errorType": "forbidden", "error": "snapshots are for operators"})
		return
	}
	db, ok := s.store.(snapshotter)
	if !ok {
		writeAPIJSON(w, http.StatusNotImplemented, map[string]any{"status": "error", "errorType": "unavailable", "error": "this storage cannot snapshot"})
		return
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(suffix)
	dir := filepath.Join(s.cfg.Path(s.cfg.DataDir), "snapshots", name)
	if err := db.Snapshot(dir, true); err != nil {
		s.logger.Error("snapshot failed", "dir", dir, "caller", c.Name, "err", err)
		writeAPIJSON(w, http.StatusInternalServerError, map[string]any{"status": "error", "errorType": "internal", "error": fmt.Sprintf("snapshot: %v", err)})
		return
	}
	s.logger.Info("snapshot written", "dir", dir, "caller", c.Name)
	writeAPIJSON(w, http.StatusOK, map[string]any{"status": "success", "data": map[string]string{"name": name}})
}
