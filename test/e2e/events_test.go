package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	// Everything the new subscriber gets in its first seconds: the missed
	// exit, once, and nothing about the exit published before the crash.
	var got []*runtimeapi.ContainerEventResponse
	for deadline := time.After(3 * time.Second); ; {
		select {
		case e := <-ev.ch:
			got = append(got, e)
			continue
		case err := <-ev.err:
			t.Fatalf("event stream ended: %v", err)
		case <-deadline:
		}
		break
	}
	var missedEv *runtimeapi.ContainerEventResponse
	for _, e := range got {
		switch e.ContainerId {
		case missed:
			if missedEv != nil || e.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
				t.Errorf("event %s about the container that exited while skiffd was down (one STOPPED wanted)", e.ContainerEventType)
			}
			missedEv = e
		case seen, running:
			t.Errorf("event %s about %s after the restart", e.ContainerEventType, e.ContainerId)
		}
	}
	if missedEv == nil {
		t.Fatalf("no STOPPED event for the exit missed while skiffd was down (got %d events)", len(got))
	}
	if missedEv.PodSandboxStatus.GetId() != podID {
		t.Errorf("missed STOPPED event: pod status %v", missedEv.PodSandboxStatus)
	}
	if st := eventStatus(missedEv, missed); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 {
		t.Fatalf("missed STOPPED event: status %v, want EXITED with code 7", st)
	}

	if _, err := d.rt.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: running, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	e, _ := ev.expect(t, running, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podID)
	if st := eventStatus(e, running); st.GetExitCode() != 137 {
		t.Errorf("STOPPED event after the restart: status %v", st)
	}
}

// TestEventsShimKilled: when a pod's shim dies, each of its containers
// gives one STOPPED event (exit 137, reason ShimLost) and the pod a
// STOPPED event, without any CRI call.
func TestEventsShimKilled(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "events-shim-killed")
	ev := d.subscribe(t)
	ids := []string{
		d.runContainer(t, podID, podCfg, "a", "sleep", "1000"),
		d.runContainer(t, podID, podCfg, "b", "sleep", "1000"),
	}
	for _, id := range ids {
		d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	}
	d.killShim(t, podID)
	// The events of different containers may interleave: gather them.
	stopped := map[string]*runtimeapi.ContainerEventResponse{}
	deadline := time.After(60 * time.Second)
	for len(stopped) < len(ids)+1 {
		select {
		case e := <-ev.ch:
			if e.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
				continue
			}
			if stopped[e.ContainerId] != nil {
				t.Fatalf("second STOPPED event about %s", e.ContainerId)
			}
			stopped[e.ContainerId] = e
		case err := <-ev.err:
			t.Fatalf("event stream ended: %v", err)
		case <-deadline:
			t.Fatalf("STOPPED events within 60s of the shim's death: %d, want %d", len(stopped), len(ids)+1)
		}
	}
	for _, id := range ids {
		e := stopped[id]
		if e == nil {
			t.Fatalf("no STOPPED event about %s", id)
		}
		if st := eventStatus(e, id); st.GetExitCode() != 137 || st.GetReason() != "ShimLost" {
			t.Errorf("STOPPED event of a container of a lost shim: status %v, want 137 ShimLost", st)
		}
	}
	if e := stopped[podID]; e == nil || e.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod STOPPED event: %v, want the pod NOTREADY", e)
	}
	for _, id := range ids {
		ev.none(t, id, 500*time.Millisecond)
	}
}

// TestEventsStalledSubscriber: a GetContainerEvents subscriber that stops
// reading does not hold pod creation up. 80 pods with a running container
// each (320 events, past the 256 a subscriber may have outstanding) are
// created while it reads nothing; their creation times are logged, not
// asserted. When it reads again it gets every event in order, or, if it
// was dropped, ResourceExhausted after the events it had: never a silent
// gap.
func TestEventsStalledSubscriber(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stalled, err := d.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	const pods = 80
	var ids []string
	var took []time.Duration
	for i := 0; i < pods; i++ {
		start := time.Now()
		podID, podCfg := d.runPod(t, "stalled-"+strconv.Itoa(i))
		ctr := d.runContainer(t, podID, podCfg, "c", "sleep", "600")
		took = append(took, time.Since(start))
		ids = append(ids, podID, podID, ctr, ctr)
	}
	avg := func(d []time.Duration) time.Duration {
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		return sum / time.Duration(len(d))
	}
	t.Logf("pod + container up while a subscriber reads nothing: first 10 %v each, last 10 %v each", avg(took[:10]), avg(took[pods-10:]))

	// Read again: the events of these pods, in creation order, or an end
	// that says events were missed.
	got := 0
	for got < len(ids) {
		ev, err := stalled.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("after %d events the stream ended with %v, want every event or ResourceExhausted", got, err)
			}
			t.Logf("dropped after %d events: %v", got, err)
			return
		}
		if ev.ContainerId != ids[got] {
			t.Fatalf("event %d is about %s (%s), want %s: out of order or one missing", got, ev.ContainerId, ev.ContainerEventType, ids[got])
		}
		got++
	}
	t.Logf("all %d events delivered in order after the stall", got)
}
