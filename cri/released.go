package cri

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/meta"
)

// releasedSet holds the containers whose exit skiffd has seen and whose
// executor state, cgroups and rootfs mount it has already freed
// (releaseLocked). It lives in memory: after a restart RemoveContainer does
// every step again, each of which is idempotent.
type releasedSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func newReleasedSet() *releasedSet { return &releasedSet{m: map[string]bool{}} }

func (r *releasedSet) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[id] = true
}

func (r *releasedSet) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id]
}

func (r *releasedSet) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// releaseLocked frees what an exited container holds until its removal: its
// executor state and cgroups (the shim deletes it, and forgets it: its exit
// record answers for it from then on) and its rootfs mount. The writable
// layer, the logs, the exit record and the record stay for RemoveContainer.
// containerd's task delete and CRI-O's container stop free the same at the
// same point, and a node keeps exited containers (init containers, restarts
// in back-off, finished jobs) for a long time. It does nothing unless
// skiffd has seen the container exit. Callers hold rec's lock.
func (s *Server) releaseLocked(ctx context.Context, rec *meta.Container) error {
	if s.released.has(rec.ID) {
		return nil
	}
	if seen, ok := s.observed.status(rec.ID); !ok || seen != StateExited {
		return nil
	}
	if err := s.deleteFromShim(ctx, rec); err != nil {
		return err
	}
	if err := s.rootfs.Detach(ctx, rec.ID); err != nil {
		return fmt.Errorf("release container %s: %w", rec.ID, err)
	}
	s.released.add(rec.ID)
	return nil
}

// releaseExited is releaseLocked after an exit, which fails nothing: what
// is not freed now, RemoveContainer frees. A shim that is going away (its
// pod is being stopped) is not worth a warning.
func (s *Server) releaseExited(ctx context.Context, rec *meta.Container) {
	if err := s.releaseLocked(ctx, rec); err != nil {
		if errors.Is(err, errdefs.ErrUnavailable) {
			s.log.Debug("release exited container", "container", rec.ID, "err", err)
			return
		}
		s.log.Warn("release exited container", "container", rec.ID, "err", err)
	}
}

// deleteFromShim has the pod's shim delete the container (its executor
// state and cgroups) and the runtime drop whatever it still holds.
func (s *Server) deleteFromShim(ctx context.Context, rec *meta.Container) error {
	if shim, err := s.shims.Connect(ctx, rec.PodID); err == nil {
		err := shim.Delete(ctx, rec.ID)
		shim.Close()
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete container %s from its shim: %w", rec.ID, err)
		}
	}
	if err := s.shims.Cleanup(ctx, rec.ID); err != nil {
		return fmt.Errorf("delete container %s: %w", rec.ID, err)
	}
	return nil
}
