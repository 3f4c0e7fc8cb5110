package cri

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Recover rebuilds the daemon's view after a restart from the records on
// disk: names are reserved again, and work a crash interrupted is finished
// or undone (a pod left half-created loses its network attachment).
//
// ctx bounds the daemon's background work from then on (the watches of the
// pods' shims), so it must last as long as the daemon.
func (s *Server) Recover(ctx context.Context) error {
	s.life.Store(&ctx)
	pods, err := s.meta.Pods()
	if err != nil {
		return fmt.Errorf("recover pods: %w", err)
	}
	for _, p := range pods {
		if err := s.podNames.reserve(p.Name, p.ID); err != nil {
			s.log.Warn("recover: duplicate pod name", "pod", p.ID, "err", err)
		}
		if p.State != podReady && p.NetworkSetUp && s.network != nil {
			cfg, err := podConfig(p)
			if err != nil {
				s.log.Warn("recover: pod config", "pod", p.ID, "err", err)
				continue
			}
			if err := s.network.Teardown(ctx, s.netRequest(p, cfg)); err != nil {
				s.log.Warn("recover: tear down network of a half-created pod", "pod", p.ID, "err", err)
				continue
			}
			p.NetworkSetUp = false
			if err := s.meta.PutPod(p); err != nil {
				return err
			}
		}
	}
	if s.network != nil {
		ids := make([]string, 0, len(pods))
		for _, p := range pods {
			if p.NetworkSetUp {
				ids = append(ids, p.ID)
			}
		}
		if err := s.network.GC(ctx, ids); err != nil {
			s.log.Warn("recover: network garbage collection", "err", err)
		}
	}
	ctrs, err := s.meta.Containers()
	if err != nil {
		return fmt.Errorf("recover containers: %w", err)
	}
	known := map[string]bool{}
	for _, c := range ctrs {
		known[c.ID] = true
		if err := s.ctrNames.reserve(c.Name, c.ID); err != nil {
			s.log.Warn("recover: duplicate container name", "container", c.ID, "err", err)
		}
	}
	// A crash between the shim creating a container and its record being
	// written leaves a container nobody knows: end it.
	for _, p := range pods {
		if p.State != podReady {
			continue
		}
		shim, err := s.shims.Connect(ctx, p.ID)
		if err != nil {
			s.log.Warn("recover: pod shim unreachable", "pod", p.ID, "err", err)
			// It died while the daemon was down.
			go s.shimExited(p.ID, 0)
			continue
		}
		s.watchShim(p.ID, shim.Pid())
		ids, err := shim.List(ctx)
		if err != nil {
			s.log.Warn("recover: list pod containers", "pod", p.ID, "err", err)
		}
		for _, id := range ids {
			if known[id] {
				continue
			}
			s.log.Info("recover: removing a container without a record", "pod", p.ID, "container", id)
			_ = shim.Kill(ctx, id, int(unix.SIGKILL), true)
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = shim.Wait(wctx, id)
			cancel()
			if err := shim.Delete(ctx, id); err != nil {
				s.log.Warn("recover: delete orphan container", "container", id, "err", err)
			}
			if err := s.rootfs.Unmount(ctx, id); err != nil {
				s.log.Warn("recover: unmount orphan rootfs", "container", id, "err", err)
			} else if err := os.RemoveAll(s.containerDir(id)); err != nil {
				s.log.Warn("recover: remove orphan container directory", "container", id, "err", err)
			}
		}
		_ = shim.Close()
	}
	// Every container whose exit was not seen gets its exit watch again:
	// one that exited while skiffd was down answers at once, and its
	// STOPPED event waits for the first subscriber (the kubelet
	// subscribes after the restart).
	watched := 0
	for _, c := range ctrs {
		if !c.ExitSeen {
			s.watchContainer(c.PodID, c.ID)
			watched++
		}
	}
	s.log.Info("recovered state", "pods", len(pods), "containers", len(ctrs), "watched", watched)
	return nil
}
