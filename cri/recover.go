package cri

import (
	"context"
	"fmt"
)

// Recover rebuilds the daemon's view after a restart from the records on
// disk: names are reserved again, and work a crash interrupted is finished
// or undone (a pod left half-created loses its network attachment).
func (s *Server) Recover(ctx context.Context) error {
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
	for _, c := range ctrs {
		if err := s.ctrNames.reserve(c.Name, c.ID); err != nil {
			s.log.Warn("recover: duplicate container name", "container", c.ID, "err", err)
		}
	}
	s.log.Info("recovered state", "pods", len(pods), "containers", len(ctrs))
	return nil
}
