package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// watchShim follows a pod's shim process: when it dies, every container of
// the pod is killed and recorded as exited (nothing is left to keep its
// logs, reap it or record its exit), and the pod turns NotReady so that the
// kubelet replaces it, as it does when containerd's pause container dies.
// The watch lasts until the shim exits or the daemon stops.
func (s *Server) watchShim(podID string, pid int) {
	ctx := s.lifetime()
	go func() {
		if err := s.shims.WaitExit(ctx, podID, pid); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("cannot watch the pod's shim", "pod", podID, "pid", pid, "err", err)
			}
			return
		}
		s.shimExited(podID, pid)
	}()
}

// lifetime is the context of the daemon's background work, from Recover.
// Wait blocks until the background work started under the context given to
// Recover (the containers' exit watches, and what they do on an exit) has
// ended; it ends once that context is done.
func (s *Server) Wait() { s.background.Wait() }

func (s *Server) lifetime() context.Context {
	if ctx := s.life.Load(); ctx != nil {
		return *ctx
	}
	return context.Background()
}

// shimExited handles the exit of a pod's shim. A shim that shut down
// because its pod stopped left an exit record for every container; one
// that died left containers without: those are ended now.
func (s *Server) shimExited(podID string, pid int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.lifetime()), 2*time.Minute)
	defer cancel()
	pod, err := s.meta.Pod(podID)
	if errdefs.IsNotFound(err) {
		return
	}
	if err != nil {
		s.log.Error("pod shim exited; cannot read the pod", "pod", podID, "err", err)
		return
	}
	if pod.State != podReady {
		return
	}
	if !s.shims.Died(podID) {
		return // shut down as asked (the pod is stopping), or running again
	}
	s.log.Error("pod shim died; ending the pod's containers", "pod", podID, "pid", pid)
	ctrs, err := s.podContainers(podID)
	if err != nil {
		s.log.Error("pod shim died; cannot list the pod's containers", "pod", podID, "err", err)
	}
	for _, c := range ctrs {
		unlock := s.locks.lock(c.ID)
		st, err := s.containerState(ctx, c)
		if err == nil {
			s.noteExitLocked(ctx, c.ID)
		}
		unlock()
		if err != nil {
			s.log.Error("end a container of a lost shim", "pod", podID, "container", c.ID, "err", err)
			continue
		}
		s.log.Info("container of a lost shim", "pod", podID, "container", c.ID, "state", st.Status, "reason", st.Reason)
	}
	s.markPodLost(podID)
}

// markPodLost turns a pod whose shim died NotReady: it can run no more
// containers. Its network, namespaces and pod init stay until the kubelet
// stops it.
func (s *Server) markPodLost(podID string) {
	unlock := s.locks.lock(podID)
	defer unlock()
	pod, err := s.meta.Pod(podID)
	if err != nil || pod.State != podReady {
		return
	}
	pod.State = podNotReady
	if err := s.meta.PutPod(pod); err != nil {
		s.log.Error("mark the pod of a lost shim not ready", "pod", podID, "err", err)
		return
	}
	// The kubelet relists the pod on its STOPPED event and replaces it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.lifetime()), time.Minute)
	defer cancel()
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID, podID)
}
