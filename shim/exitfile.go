package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/atomicfile"
)

// ExitRecord is the durable record of a container's exit, written to
// <state dir>/exit.json before the exit is reported to anyone, so a daemon
// that restarts later learns the real outcome even if the shim is gone.
type ExitRecord struct {
	ID         string    `json:"id"`
	Pid        int       `json:"pid"`
	ExitCode   int       `json:"exitCode"`
	Signal     int       `json:"signal,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

// WriteExitFile writes rec to dir/exit.json atomically and durably: a temp
// file is written and fsynced, renamed over the target, and the directory is
// fsynced so the rename itself survives a crash.
func WriteExitFile(dir string, rec ExitRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode exit record of %q: %w", rec.ID, err)
	}
	return atomicfile.Write(filepath.Join(dir, ExitFileName), b, 0o644)
}

// ReadExitFile reads dir/exit.json. It returns an error wrapping
// errdefs.ErrNotFound when the container has not exited (or never existed).
func ReadExitFile(dir string) (ExitRecord, error) {
	var rec ExitRecord
	path := filepath.Join(dir, ExitFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rec, errdefs.NotFound("exit record %s", path)
		}
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode exit record %s: %w", path, err)
	}
	return rec, nil
}

// ContainerStateDir returns the default state directory (holding exit.json)
// of container id under the shim directory dir.
func ContainerStateDir(dir, id string) string { return filepath.Join(dir, id) }
