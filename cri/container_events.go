package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// eventBuffer is how many events each GetContainerEvents subscriber may
// fall behind before it is dropped. The kubelet reads its stream into a
// channel of its own at once, so only a stuck reader fills it.
const eventBuffer = 256

// GetContainerEvents streams container and pod sandbox transitions until
// the client goes away. A client that falls eventBuffer events behind is
// dropped: its stream ends with ResourceExhausted and it subscribes again.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	sub := s.events.Subscribe()
	defer sub.Close()
	ctx := stream.Context()
	// The error is logged once, by the interceptor, as every failed RPC.
	ended := func() error {
		if err := sub.Err(); err != nil {
			return errdefs.ResourceExhausted("container events: subscriber dropped: %v; subscribe again and relist", err)
		}
		return nil
	}
	for {
		// A dropped subscriber ends at once, though events are buffered:
		// it has missed some and must relist.
		select {
		case <-sub.Done():
			return ended()
		default:
		}
		select {
		case ev := <-sub.Events():
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-sub.Done():
			return ended()
		case <-ctx.Done():
			return nil
		}
	}
}

// publish sends a transition of container (or pod sandbox, when id is the
// pod's ID) id of pod podID, with the statuses of the pod and of its
// containers as they are now. Callers hold id's lock, so the events of one
// container are published in the order of its transitions.
func (s *Server) publish(ctx context.Context, kind runtimeapi.ContainerEventType, podID, id string) {
	ctx, cancel := eventContext(ctx)
	defer cancel()
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId: id, ContainerEventType: kind, CreatedAt: time.Now().UnixNano(),
	}
	if ps, err := s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID}); err == nil {
		ev.PodSandboxStatus = ps.GetStatus()
	} else {
		s.log.Warn("container event without pod status", "pod", podID, "container", id, "event", kind, "err", err)
	}
	ev.ContainersStatuses = s.podContainerStatuses(ctx, podID)
	s.events.Publish(ev)
}

// publishSandbox is publish for a pod whose record may be gone (after
// RemovePodSandbox): st is its last status.
func (s *Server) publishSandbox(ctx context.Context, kind runtimeapi.ContainerEventType, st *runtimeapi.PodSandboxStatus) {
	ctx, cancel := eventContext(ctx)
	defer cancel()
	s.events.Publish(&runtimeapi.ContainerEventResponse{
		ContainerId: st.GetId(), ContainerEventType: kind, CreatedAt: time.Now().UnixNano(),
		PodSandboxStatus: st, ContainersStatuses: s.podContainerStatuses(ctx, st.GetId()),
	})
}

// eventContext is the context the statuses of an event are read with: the
// transition has happened, so the caller giving up (a kubelet's RPC
// timeout) must not leave its event without them.
func eventContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

func (s *Server) podContainerStatuses(ctx context.Context, podID string) []*runtimeapi.ContainerStatus {
	ctrs, err := s.podContainers(podID)
	if err != nil {
		s.log.Warn("container event: list the pod's containers", "pod", podID, "err", err)
		return nil
	}
	out := make([]*runtimeapi.ContainerStatus, 0, len(ctrs))
	for _, c := range ctrs {
		st, err := s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ID})
		if err != nil {
			if !errdefs.IsNotFound(err) {
				s.log.Warn("container event: container status", "container", c.ID, "err", err)
			}
			continue
		}
		out = append(out, st.GetStatus())
	}
	return out
}

// noteExitLocked publishes container id's CONTAINER_STOPPED event if it
// has exited and its exit was not published yet, and records that it was.
// Every path that learns of an exit calls it (the exit watch, StopContainer,
// RemoveContainer, the loss of a shim), so whichever comes first publishes
// and the others find ExitSeen. Callers hold id's lock.
func (s *Server) noteExitLocked(ctx context.Context, id string) {
	rec, err := s.meta.Container(id)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			s.log.Warn("container exit: read the record", "container", id, "err", err)
		}
		return
	}
	if rec.ExitSeen {
		return
	}
	st, err := s.containerState(ctx, rec)
	if err != nil || st.Status != StateExited {
		return
	}
	rec.ExitSeen = true
	if err := s.meta.PutContainer(rec); err != nil {
		// Published anyway: a restarted skiffd then publishes it again,
		// which only makes the kubelet relist the pod once more.
		s.log.Warn("container exit: record that it was seen", "container", id, "err", err)
	}
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, rec.PodID, id)
}

// watchContainer holds a wait on container id in its pod's shim, which
// answers when the container exits (the shim pushes the exit; nothing
// polls), and then publishes the exit. After a restart it is called for
// every container whose exit was not seen: the wait of one that exited
// meanwhile answers at once. The watch ends with the exit, the container's
// removal or the daemon. The first connection is made before it returns,
// so a container created is watched from then on.
func (s *Server) watchContainer(podID, id string) {
	ctx := s.lifetime()
	shims := s.shims
	shim, connErr := shims.Connect(ctx, podID)
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		backoff := 100 * time.Millisecond
		for {
			err := connErr
			if shim != nil {
				_, err = shim.Wait(ctx, id)
				_ = shim.Close()
				shim = nil
			} else if err != nil {
				// Not NotFound, whatever Connect said: that would mean
				// the container is gone from a shim that answers.
				err = fmt.Errorf("%w: %v", errdefs.ErrUnavailable, err)
			}
			if ctx.Err() != nil {
				return
			}
			if errdefs.IsNotFound(err) {
				// Deleted from the shim: RemoveContainer or StopPodSandbox,
				// which noted the exit themselves.
				return
			}
			unlock := s.locks.lock(id)
			s.noteExitLocked(ctx, id)
			rec, rerr := s.meta.Container(id)
			if rerr == nil && rec.ExitSeen {
				s.releaseExited(ctx, rec)
			}
			unlock()
			// Wait failed though the container runs and its shim too
			// (a dial that failed under load): wait again.
			if err == nil || rerr != nil || rec.ExitSeen || !shims.Running(podID) {
				return
			}
			s.log.Debug("container exit watch failed; watching again", "container", id, "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			shim, connErr = shims.Connect(ctx, podID)
		}
	}()
}
