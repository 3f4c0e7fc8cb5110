package e2e

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// events is one GetContainerEvents subscription, read into a channel.
type events struct {
	ch  chan *runtimeapi.ContainerEventResponse
	err chan error
}

// subscribe subscribes to skiffd's container events until the test ends.
func (d *daemon) subscribe(t *testing.T) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := d.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	ev := &events{ch: make(chan *runtimeapi.ContainerEventResponse, 1000), err: make(chan error, 1)}
	go func() {
		for {
			e, err := stream.Recv()
			if err != nil {
				ev.err <- err
				return
			}
			ev.ch <- e
		}
	}()
	return ev
}

// next returns the next event about id (a container, or a pod), skipping
// others; it fails the test after timeout.
func (e *events) next(t *testing.T, id string, timeout time.Duration) *runtimeapi.ContainerEventResponse {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-e.ch:
			if ev.ContainerId == id {
				return ev
			}
		case err := <-e.err:
			t.Fatalf("event stream ended: %v", err)
		case <-deadline:
			t.Fatalf("no event about %s within %v", id, timeout)
		}
	}
}

// expect reads the next event about id and checks its kind and that it
// carries the pod's status; it returns the event and when it came.
func (e *events) expect(t *testing.T, id string, kind runtimeapi.ContainerEventType, podID string) (*runtimeapi.ContainerEventResponse, time.Time) {
	t.Helper()
	ev := e.next(t, id, 30*time.Second)
	at := time.Now()
	if ev.ContainerEventType != kind {
		t.Fatalf("event about %s: %s, want %s", id, ev.ContainerEventType, kind)
	}
	if ev.PodSandboxStatus.GetId() != podID || ev.PodSandboxStatus.GetMetadata().GetUid() == "" {
		t.Fatalf("%s event about %s: pod status %v, want pod %s with metadata", kind, id, ev.PodSandboxStatus, podID)
	}
	return ev, at
}

// none checks that no event about id comes within d.
func (e *events) none(t *testing.T, id string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-e.ch:
			if ev.ContainerId == id {
				t.Fatalf("unexpected %s event about %s", ev.ContainerEventType, id)
			}
		case <-deadline:
			return
		}
	}
}

func eventStatus(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, st := range ev.ContainersStatuses {
		if st.Id == id {
			return st
		}
	}
	return nil
}

// TestEventsLifecycle: a container that exits by itself, and one killed
// by StopContainer, as GetContainerEvents shows them.
func TestEventsLifecycle(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	ev := d.subscribe(t)
	ctx := ctxT(t, 5*time.Minute)

	podID, podCfg := d.runPod(t, "events")
	ev.expect(t, podID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, podID)
	ev.expect(t, podID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, podID)

	id := d.createContainer(t, podID, podCfg, containerConfig("exiter", busybox, "sh", "-c", "sleep 1; exit 3"))
	e, _ := ev.expect(t, id, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, podID)
	if st := eventStatus(e, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("CREATED event: container status %v", st)
	}
	started := time.Now()
	d.startContainer(t, id)
	e, at := ev.expect(t, id, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, podID)
	t.Logf("STARTED event %v after StartContainer was sent", at.Sub(started))
	if st := eventStatus(e, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("STARTED event: container status %v", st)
	}
	e, at = ev.expect(t, id, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID)
	st := eventStatus(e, id)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 3 {
		t.Fatalf("STOPPED event: container status %v, want EXITED with code 3", st)
	}
	t.Logf("STOPPED event %v after the container's exit", at.Sub(time.Unix(0, st.FinishedAt)))
	ev.none(t, id, 500*time.Millisecond)
	if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	e, _ = ev.expect(t, id, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, podID)
	if eventStatus(e, id) != nil {
		t.Errorf("DELETED event still lists the container")
	}

	// Killed by StopContainer: one STOPPED, from the exit.
	sleeper := d.runContainer(t, podID, podCfg, "sleeper", "sleep", "1000")
	ev.expect(t, sleeper, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, podID)
	ev.expect(t, sleeper, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, podID)
	if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: sleeper, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	e, _ = ev.expect(t, sleeper, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID)
	if st := eventStatus(e, sleeper); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 137 {
		t.Errorf("STOPPED event of a killed container: status %v, want EXITED 137", st)
	}
	if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: sleeper, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	ev.none(t, sleeper, time.Second)

	if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, podID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID)
	if _, err := d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	ev.expect(t, sleeper, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, podID)
	ev.expect(t, podID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, podID)
}

// TestEventsAfterRestart: a container that exits while skiffd is down
// reaches the first subscriber after the restart as a STOPPED event; one
// whose exit was published before is not published again, and a running
// container is watched again.
func TestEventsAfterRestart(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "events-restart")
	seen := d.runContainer(t, podID, podCfg, "seen", "sh", "-c", "exit 1")
	d.waitState(t, seen, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	missed := d.runContainer(t, podID, podCfg, "missed", "sh", "-c", "sleep 2; exit 7")
	running := d.runContainer(t, podID, podCfg, "running", "sleep", "1000")
	d.waitState(t, missed, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	// Let the seen exit reach skiffd's records before the crash.
	time.Sleep(500 * time.Millisecond)

	d.kill9()
	time.Sleep(3 * time.Second) // "missed" exits meanwhile
	d.restart()

	ev := d.subscribe(t)
	e, _ := ev.expect(t, missed, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID)
	if st := eventStatus(e, missed); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
		t.Fatalf("missed STOPPED event: status %v, want EXITED with code 7", st)
	}
	ev.none(t, seen, time.Second)

	if _, err := d.rt.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: running, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	e, _ = ev.expect(t, running, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID)
	if st := eventStatus(e, running); st.GetExitCode() != 137 {
		t.Errorf("STOPPED event after the restart: status %v", st)
	}
}
