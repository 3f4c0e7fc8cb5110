package cri

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/meta"
)

// TestListContainersOneCallPerPod: with no status seen yet (after a
// restart), ListContainers asks each pod's shim once for all its
// containers, reports the states the shims give, and falls back to the
// exit records of a pod whose shim is gone.
func TestListContainersOneCallPerPod(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	aCfg := podConfigFor("a", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	bCfg := podConfigFor("b", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	a, b := e.runPod(t, aCfg), e.runPod(t, bCfg)
	a1 := e.createContainer(t, a, aCfg, ctrConfig("a1", nil))
	a2 := e.createContainer(t, a, aCfg, ctrConfig("a2", nil))
	b1 := e.createContainer(t, b, bCfg, ctrConfig("b1", nil))
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: a1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: b1}); err != nil {
		t.Fatal(err)
	}
	// b1 exits, then b's shim goes away: its exit record remains.
	e.shims.set(b1, func(st *ContainerState) { st.Status, st.ExitCode = StateExited, 3 })
	e.shims.mu.Lock()
	delete(e.shims.pods, b)
	e.shims.mu.Unlock()
	waitObserved(t, e.s, b1, StateExited)
	// As after a restart: nothing seen yet.
	e.s.observed = newObservedStates()

	e.shims.statesCalls = map[string]int{}
	resp, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]runtimeapi.ContainerState{}
	for _, c := range resp.Containers {
		got[c.Id] = c.State
	}
	want := map[string]runtimeapi.ContainerState{
		a1: runtimeapi.ContainerState_CONTAINER_RUNNING,
		a2: runtimeapi.ContainerState_CONTAINER_CREATED,
		b1: runtimeapi.ContainerState_CONTAINER_EXITED,
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("container %s: %v, want %v", id, got[id], st)
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	if e.shims.statesCalls[a] != 1 || e.shims.statesCalls[b] != 1 {
		t.Errorf("States calls %v, want one per pod", e.shims.statesCalls)
	}
}

// TestListContainersFromObservedStates: once skiffd has seen a container's
// status (it created and started it, and its exit watch reported the
// exit), ListContainers answers without asking any shim, and forgets a
// removed container.
func TestListContainersFromObservedStates(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cfg := podConfigFor("a", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, cfg)
	c1 := e.createContainer(t, pod, cfg, ctrConfig("c1", nil))
	c2 := e.createContainer(t, pod, cfg, ctrConfig("c2", nil))
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c1}); err != nil {
		t.Fatal(err)
	}
	list := func(want map[string]runtimeapi.ContainerState) {
		t.Helper()
		e.shims.mu.Lock()
		e.shims.statesCalls = map[string]int{}
		e.shims.mu.Unlock()
		resp, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]runtimeapi.ContainerState{}
		for _, c := range resp.Containers {
			got[c.Id] = c.State
		}
		if len(got) != len(want) {
			t.Errorf("listed %v, want %v", got, want)
		}
		for id, st := range want {
			if got[id] != st {
				t.Errorf("container %s: %v, want %v", id, got[id], st)
			}
		}
		e.shims.mu.Lock()
		defer e.shims.mu.Unlock()
		if len(e.shims.statesCalls) != 0 {
			t.Errorf("States calls %v, want none", e.shims.statesCalls)
		}
	}
	list(map[string]runtimeapi.ContainerState{c1: runtimeapi.ContainerState_CONTAINER_RUNNING, c2: runtimeapi.ContainerState_CONTAINER_CREATED})
	e.shims.exit(c1, 0)
	waitObserved(t, e.s, c1, StateExited)
	list(map[string]runtimeapi.ContainerState{c1: runtimeapi.ContainerState_CONTAINER_EXITED, c2: runtimeapi.ContainerState_CONTAINER_CREATED})
	if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c1}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.s.observed.status(c1); ok {
		t.Errorf("removed container %s still has a status", c1)
	}
	list(map[string]runtimeapi.ContainerState{c2: runtimeapi.ContainerState_CONTAINER_CREATED})
}

// waitObserved waits until the exit watch (or another reader) has noted
// container id in status.
func waitObserved(t *testing.T, s *Server, id, status string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, _ := s.observed.status(id); st == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never seen %s", id, status)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitExitPublished waits until the exit watch has published container
// id's exit: the event it publishes reads the container's status from its
// shim, a State call a test counting them must not see.
func waitExitPublished(t *testing.T, s *Server, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if rec, err := s.meta.Container(id); err == nil && rec.ExitSeen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: exit never published", id)
		}
		time.Sleep(time.Millisecond)
	}
	// The watch publishes holding the container's lock.
	s.locks.lock(id)()
}

// TestContainerImageAsThePodNamedIt: an image known by two tags (one
// content pulled under two names) shows, in ContainerStatus and
// ListContainers, under the tag the pod asked for: the kubelet compares it
// with the pod spec's image after an image update.
func TestContainerImageAsThePodNamedIt(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	e.images.img.RepoTags = []string{"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1", "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}
	e.images.img.RepoDigests = []string{"registry.k8s.io/e2e-test-images/glibc-dns-testing@sha256:" + strings.Repeat("a", 64),
		"registry.k8s.io/e2e-test-images/busybox@sha256:" + strings.Repeat("b", 64)}
	podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	cfg := ctrConfig("c", nil)
	// As the kubelet sends it: the image ID, and the pod spec's name.
	cfg.Image = &runtimeapi.ImageSpec{Image: e.images.img.ID, UserSpecifiedImage: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}
	id := e.createContainer(t, pod, podCfg, cfg)
	st, err := e.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetStatus().GetImage().GetImage(); got != "registry.k8s.io/e2e-test-images/busybox:1.37.0-2" {
		t.Errorf("status image %q, want the pod's tag", got)
	}
	if got := st.GetStatus().GetImageRef(); got != e.images.img.RepoDigests[1] {
		t.Errorf("status image ref %q, want %q", got, e.images.img.RepoDigests[1])
	}
	list, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].GetImage().GetImage() != "registry.k8s.io/e2e-test-images/busybox:1.37.0-2" {
		t.Errorf("ListContainers = %v, %v", list, err)
	}
}

// TestStopExitedAsksNoShim stops and removes a container skiffd saw exit:
// the exit is final, so neither asks the shim for its state again.
func TestStopExitedAsksNoShim(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c := e.runningContainer(t)
	e.shims.exit(c, 3)
	waitExitPublished(t, e.s, c)
	e.shims.mu.Lock()
	e.shims.stateCalls = map[string]int{}
	e.shims.mu.Unlock()
	if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	e.shims.mu.Lock()
	if n := e.shims.stateCalls[c]; n != 0 {
		t.Errorf("StopContainer of an exited container: %d State calls, want none", n)
	}
	e.shims.mu.Unlock()
	st, err := e.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 3 {
		t.Errorf("status after stop: %v exit %d, want exited 3", st.Status.State, st.Status.ExitCode)
	}
	e.shims.mu.Lock()
	e.shims.stateCalls = map[string]int{}
	e.shims.mu.Unlock()
	if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c}); err != nil {
		t.Fatal(err)
	}
	e.shims.mu.Lock()
	defer e.shims.mu.Unlock()
	if n := e.shims.stateCalls[c]; n != 0 {
		t.Errorf("RemoveContainer of an exited container: %d State calls, want none", n)
	}
}

// BenchmarkListContainers lists 100 pods of one container each, configured
// as the kubelet configures them (labels, annotations, environment), all
// seen running: what the kubelet's relist costs every second.
func BenchmarkListContainers(b *testing.B) {
	e := newTestEnv(b)
	ctx := context.Background()
	for i := range 100 {
		cfg := podConfigFor(fmt.Sprintf("p%d", i), runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
		pod := e.runPod(b, cfg)
		c := ctrConfig("c", nil)
		c.Labels = map[string]string{"io.kubernetes.container.name": "c", "io.kubernetes.pod.name": cfg.Metadata.Name,
			"io.kubernetes.pod.namespace": "ns", "io.kubernetes.pod.uid": cfg.Metadata.Uid}
		c.Annotations = map[string]string{"io.kubernetes.container.hash": "1b2c3d4e", "io.kubernetes.container.restartCount": "0",
			"io.kubernetes.container.terminationMessagePath": "/dev/termination-log", "io.kubernetes.container.terminationMessagePolicy": "File"}
		for j := range 10 {
			c.Envs = append(c.Envs, &runtimeapi.KeyValue{Key: fmt.Sprintf("SERVICE_%d_PORT", j), Value: []byte("tcp://10.96.0.1:443")})
		}
		id := e.createContainer(b, pod, cfg, c)
		if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		resp, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil || len(resp.Containers) != 100 {
			b.Fatalf("ListContainers: %d containers, %v", len(resp.GetContainers()), err)
		}
	}
}

// TestListedContainerIsTheConfigs: ListContainers builds each entry from the
// record and the parts of the config it keeps decoded; the entry is the one
// the whole config gives, on the first list and on every later one, and a
// removed container leaves nothing behind.
func TestListedContainerIsTheConfigs(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pcfg := podConfigFor("a", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, pcfg)
	c := ctrConfig("app", nil)
	c.Metadata.Attempt = 3
	c.Image.UserSpecifiedImage = "busybox:stable"
	c.Labels = map[string]string{"io.kubernetes.container.name": "app"}
	c.Annotations = map[string]string{"io.kubernetes.container.hash": "1b2c3d4e"}
	id := e.createContainer(t, pod, pcfg, c)
	rec, err := e.s.findContainer(id)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := containerConfig(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := criContainerOf(rec, cfg, ContainerState{Status: StateCreated})
	for i := range 2 {
		resp, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Containers) != 1 || !proto.Equal(resp.Containers[0], want) {
			t.Fatalf("list %d: %v, want [%v]", i+1, resp.Containers, want)
		}
	}
	if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.s.listed.m); n != 0 {
		t.Errorf("%d listed configs kept after the removal", n)
	}
}

func TestListedConfigsDecodeChangedConfig(t *testing.T) {
	l := newListedConfigs()
	rec := &meta.Container{ID: "c", Config: []byte(`{"metadata":{"name":"one"}}`)}
	if lc, err := l.of(rec); err != nil || lc.name != "one" {
		t.Fatalf("of = %+v, %v", lc, err)
	}
	rec.Config = []byte(`{"metadata":{"name":"two","attempt":1}}`)
	if lc, err := l.of(rec); err != nil || lc.name != "two" || lc.attempt != 1 {
		t.Fatalf("of changed config = %+v, %v", lc, err)
	}
	rec.Config = []byte(`{`)
	if _, err := l.of(rec); err == nil {
		t.Error("of an undecodable config succeeded")
	}
}
