package cri

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/events"
	"github.com/skiffcri/skiff/errdefs"
)

// eventStream is a GetContainerEvents stream: Send hands each event to
// the test; with block set it waits until the client goes away, as a
// client that stopped reading makes gRPC's Send wait.
type eventStream struct {
	grpc.ServerStream
	ctx   context.Context
	out   chan *runtimeapi.ContainerEventResponse
	block bool
}

func (s *eventStream) Context() context.Context { return s.ctx }
func (s *eventStream) Send(ev *runtimeapi.ContainerEventResponse) error {
	if s.block {
		<-s.ctx.Done()
		return s.ctx.Err()
	}
	select {
	case s.out <- ev:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// subscribe runs GetContainerEvents until the test ends (or cancel);
// its result arrives on done.
func (e *testEnv) subscribe(t *testing.T, block bool) (st *eventStream, cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st = &eventStream{ctx: ctx, out: make(chan *runtimeapi.ContainerEventResponse, 1000), block: block}
	n := e.s.events.Subscribers()
	errc := make(chan error, 1)
	go func() { errc <- e.s.GetContainerEvents(&runtimeapi.GetEventsRequest{}, st) }()
	waitFor(t, "the subscription", func() bool { return e.s.events.Subscribers() > n })
	return st, cancel, errc
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// next returns the next event, failing the test after a while.
func (s *eventStream) next(t *testing.T) *runtimeapi.ContainerEventResponse {
	t.Helper()
	select {
	case ev := <-s.out:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return nil
	}
}

// expect reads one event and checks its kind and container.
func (s *eventStream) expect(t *testing.T, kind runtimeapi.ContainerEventType, id string) *runtimeapi.ContainerEventResponse {
	t.Helper()
	ev := s.next(t)
	if ev.ContainerEventType != kind || ev.ContainerId != id {
		t.Fatalf("event %s of %s, want %s of %s", ev.ContainerEventType, ev.ContainerId, kind, id)
	}
	if ev.CreatedAt == 0 {
		t.Errorf("%s event without created_at", kind)
	}
	return ev
}

// quiet checks that no event comes for a while.
func (s *eventStream) quiet(t *testing.T) {
	t.Helper()
	select {
	case ev := <-s.out:
		t.Fatalf("unexpected event %s of %s", ev.ContainerEventType, ev.ContainerId)
	case <-time.After(100 * time.Millisecond):
	}
}

func statusOf(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, st := range ev.ContainersStatuses {
		if st.Id == id {
			return st
		}
	}
	return nil
}

func TestContainerEventsLifecycle(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	st, _, _ := e.subscribe(t, false)
	podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	for _, kind := range []runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT} {
		ev := st.expect(t, kind, pod)
		if ev.PodSandboxStatus.GetMetadata().GetUid() != "ev-uid" || ev.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatalf("sandbox %s event: pod status %v", kind, ev.PodSandboxStatus)
		}
	}

	id := e.createContainer(t, pod, podCfg, ctrConfig("c", nil))
	ev := st.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id)
	if ev.PodSandboxStatus.GetId() != pod || statusOf(ev, id).GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("CREATED event: pod %s, status %v", ev.PodSandboxStatus.GetId(), statusOf(ev, id))
	}
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	ev = st.expect(t, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, id)
	if statusOf(ev, id).GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("STARTED event: status %v", statusOf(ev, id))
	}

	// The container exits by itself: its shim pushes the exit.
	e.shims.exit(id, 3)
	ev = st.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, id)
	if cs := statusOf(ev, id); cs.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || cs.GetExitCode() != 3 {
		t.Fatalf("STOPPED event: status %v", cs)
	}

	if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	ev = st.expect(t, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, id)
	if ev.PodSandboxStatus.GetId() != pod || statusOf(ev, id) != nil {
		t.Fatalf("DELETED event: pod %v, statuses %v", ev.PodSandboxStatus, ev.ContainersStatuses)
	}

	if _, err := e.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	ev = st.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod)
	if ev.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("sandbox STOPPED event: pod state %v", ev.PodSandboxStatus.GetState())
	}
	// Stopping again is no transition.
	if _, err := e.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	ev = st.expect(t, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, pod)
	if ev.PodSandboxStatus.GetMetadata().GetUid() != "ev-uid" {
		t.Fatalf("sandbox DELETED event without the pod's last status: %v", ev.PodSandboxStatus)
	}
	st.quiet(t)
}

// A stopped container gives one STOPPED event, whether the stop or the
// exit watch sees the exit first, and it comes before DELETED.
func TestContainerEventsStopOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout int64
		started bool
	}{
		{"kill", 0, true},
		{"stop signal", 10, true},
		{"never started", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			ctx := context.Background()
			podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			pod := e.runPod(t, podCfg)
			id := e.createContainer(t, pod, podCfg, ctrConfig("c", nil))
			if tc.started {
				if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
					t.Fatal(err)
				}
			}
			st, _, _ := e.subscribe(t, false)
			// Skip what came before (held while nobody was subscribed):
			// the pod's events and the container's, up to its last.
			last := runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
			if tc.started {
				last = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
			}
			for ev := st.next(t); ev.ContainerId != id || ev.ContainerEventType != last; ev = st.next(t) {
			}
			if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: tc.timeout}); err != nil {
				t.Fatal(err)
			}
			// The stop returns after the event is out.
			ev := st.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, id)
			if cs := statusOf(ev, id); cs.GetExitCode() != 137 {
				t.Fatalf("STOPPED event: status %v", cs)
			}
			if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			st.quiet(t) // the exit watch has answered by now, and said nothing
			if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			st.expect(t, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, id)
			st.quiet(t)
		})
	}
}

// A subscriber that stops reading is dropped once its buffer is full;
// CreateContainer never waits for it, and another subscriber keeps all
// its events.
func TestContainerEventsSlowSubscriberDropped(t *testing.T) {
	e := newTestEnv(t)
	e.s.events = events.New(8)
	podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	good, _, _ := e.subscribe(t, false)
	// The pod's events, held while nobody was subscribed.
	good.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, pod)
	good.expect(t, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, pod)
	e.subscribe(t, true) // takes one event into Send, which never returns

	created := make(chan []string)
	go func() {
		var ids []string
		for i := range 12 {
			ids = append(ids, e.createContainer(t, pod, podCfg, ctrConfig(string(rune('a'+i)), nil)))
		}
		created <- ids
	}()
	var ids []string
	select {
	case ids = <-created:
	case <-time.After(5 * time.Second):
		t.Fatal("CreateContainer blocked on a subscriber that does not read")
	}
	for _, id := range ids {
		good.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id)
	}
	if n := e.s.events.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers, want 1: the stuck one is not dropped", n)
	}
}

// The stream of a dropped subscriber ends with ResourceExhausted.
func TestContainerEventsDropEndsStream(t *testing.T) {
	e := newTestEnv(t)
	e.s.events = events.New(1)
	st, _, done := e.subscribe(t, false)
	st.out = make(chan *runtimeapi.ContainerEventResponse) // nobody reads: Send waits
	podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)                             // CREATED is in Send, STARTED fills the buffer...
	e.createContainer(t, pod, podCfg, ctrConfig("c", nil)) // ...and this one drops it
	waitFor(t, "the subscriber to be dropped", func() bool { return e.s.events.Subscribers() == 0 })
	<-st.out // Send returns
	select {
	case err := <-done:
		if !errors.Is(err, errdefs.ErrResourceExhausted) {
			t.Fatalf("stream of a dropped subscriber ended with %v, want ResourceExhausted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of a dropped subscriber did not end")
	}
}

func TestContainerEventsCancel(t *testing.T) {
	e := newTestEnv(t)
	_, cancel, done := e.subscribe(t, false)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("GetContainerEvents after the client went away: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetContainerEvents did not return when its client went away")
	}
	if n := e.s.events.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after cancel", n)
	}
}

// A restarted skiffd publishes the exits it missed, once, to its first
// subscriber; exits seen before the restart are not published again.
func TestContainerEventsAfterRestart(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	old, kill := context.WithCancel(context.Background())
	e.s.life.Store(&old)
	podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	var ids []string
	for _, name := range []string{"seen", "missed", "running"} {
		id := e.createContainer(t, pod, podCfg, ctrConfig(name, nil))
		if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	seen, missed, running := ids[0], ids[1], ids[2]
	e.shims.exit(seen, 1)
	waitFor(t, "the exit to be seen", func() bool {
		rec, err := e.s.meta.Container(seen)
		return err == nil && rec.ExitSeen
	})

	// skiffd dies; meanwhile a container exits.
	kill()
	time.Sleep(10 * time.Millisecond)
	e.shims.exit(missed, 7)

	s2 := New(Options{
		Images: e.images, Network: fakeNetwork{}, PodOS: fakePodOS{}, Shims: e.shims,
		Rootfs: e.s.rootfs, ImageVolumes: e.volumes, Meta: e.s.meta, NetStats: e.netStats,
		StateDir: e.s.stateDir, RootfsRoot: e.s.rootfsRoot, Log: e.s.log,
	})
	s2.kernel = e.s.kernel
	life, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s2.Recover(life); err != nil {
		t.Fatal(err)
	}
	e.s = s2
	waitFor(t, "the missed exit to be seen", func() bool {
		rec, err := s2.meta.Container(missed)
		return err == nil && rec.ExitSeen
	})
	st, _, _ := e.subscribe(t, false)
	ev := st.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, missed)
	if cs := statusOf(ev, missed); cs.GetExitCode() != 7 {
		t.Fatalf("missed STOPPED event: status %v", cs)
	}
	st.quiet(t)
	// The running container is watched again.
	e.shims.exit(running, 2)
	st.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, running)
}

// A wait that fails while the shim runs is made again: the exit still
// comes.
func TestContainerEventsWaitRetried(t *testing.T) {
	e := newTestEnv(t)
	podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	e.shims.mu.Lock()
	e.shims.failWaits = 2
	e.shims.mu.Unlock()
	id := e.createContainer(t, pod, podCfg, ctrConfig("c", nil))
	if _, err := e.s.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	st, _, _ := e.subscribe(t, false)
	waitFor(t, "the failed waits to be made again", func() bool {
		e.shims.mu.Lock()
		defer e.shims.mu.Unlock()
		return e.shims.failWaits == 0
	})
	e.shims.exit(id, 5)
	for ev := st.next(t); ; ev = st.next(t) {
		if ev.ContainerId == id && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			if cs := statusOf(ev, id); cs.GetExitCode() != 5 {
				t.Fatalf("STOPPED event: status %v", cs)
			}
			break
		}
	}
}

// Racing RemovePodSandbox calls all succeed, and the pod is DELETED once.
func TestContainerEventsRacingPodRemoval(t *testing.T) {
	e := newTestEnv(t)
	podCfg := podConfigFor("ev", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	e.createContainer(t, pod, podCfg, ctrConfig("c", nil))
	st, _, _ := e.subscribe(t, false)
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := e.s.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
			errc <- err
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Errorf("racing RemovePodSandbox: %v", err)
		}
	}
	deleted := 0
	for {
		select {
		case ev := <-st.out:
			if ev.ContainerId == pod && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
				deleted++
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if deleted != 1 {
		t.Fatalf("%d DELETED events for the pod, want 1", deleted)
	}
}
