package cri

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListContainersOneCallPerPod: ListContainers asks each pod's shim once
// for all its containers (the kubelet lists every second), reports the
// states the shims give, and falls back to the exit records of a pod
// whose shim is gone.
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
