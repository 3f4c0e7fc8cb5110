package cri

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// rootfsOf is the fake rootfs of container id; Detach leaves a "detached"
// file in it.
func (e *testEnv) rootfsOf(id string) string {
	return filepath.Join(filepath.Dir(e.root), "rootfs", id)
}

// runningContainer runs a pod with one container, started, and returns the
// container's ID.
func (e *testEnv) runningContainer(t *testing.T) string {
	t.Helper()
	cfg := podConfigFor("a", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	c := e.createContainer(t, e.runPod(t, cfg), cfg, ctrConfig("c", nil))
	if _, err := e.s.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: c}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *testEnv) inShim(id string) bool {
	e.shims.mu.Lock()
	defer e.shims.mu.Unlock()
	_, ok := e.shims.states[id]
	return ok
}

// TestStopReleasesContainer: StopContainer frees what the stopped container
// held (it is gone from its shim, its rootfs unmounted) and keeps its
// writable layer and its exit; a resource update then only updates the
// record, and RemoveContainer frees the rest without asking the shim again.
func TestStopReleasesContainer(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c := e.runningContainer(t)
	if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	if !e.s.released.has(c) || e.inShim(c) {
		t.Fatalf("after StopContainer: released %v, still in its shim %v", e.s.released.has(c), e.inShim(c))
	}
	if _, err := os.Stat(filepath.Join(e.rootfsOf(c), "detached")); err != nil {
		t.Errorf("rootfs not detached, or its layer gone: %v", err)
	}
	st, err := e.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 137 {
		t.Errorf("status of the released container: %v exit %d, want exited 137", st.Status.State, st.Status.ExitCode)
	}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512}
	if _, err := e.s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: c, Linux: res}); err != nil {
		t.Fatalf("UpdateContainerResources of a released container: %v", err)
	}
	st, err = e.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetStatus().GetResources().GetLinux().GetCpuShares(); got != 512 {
		t.Errorf("resources after the update: cpu shares %d, want 512", got)
	}
	e.shims.mu.Lock()
	updates := len(e.shims.updates[c])
	e.shims.mu.Unlock()
	if updates != 0 {
		t.Errorf("the update of a released container reached its shim %d times", updates)
	}
	if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.rootfsOf(c)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("writable layer left after RemoveContainer: %v", err)
	}
	if e.s.released.has(c) {
		t.Error("a removed container stays in the released set")
	}
}

// TestExitReleasesContainer: a container that exits by itself is released
// by its exit watch, and its exit stays readable.
func TestExitReleasesContainer(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c := e.runningContainer(t)
	e.shims.exit(c, 3)
	deadline := time.Now().Add(5 * time.Second)
	for !e.s.released.has(c) {
		if time.Now().After(deadline) {
			t.Fatal("the exited container was never released")
		}
		time.Sleep(time.Millisecond)
	}
	if e.inShim(c) {
		t.Error("released container still in its shim")
	}
	st, err := e.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 3 {
		t.Errorf("status: %v exit %d, want exited 3", st.Status.State, st.Status.ExitCode)
	}
}

// TestReleaseNeedsSeenExit: a container skiffd has not seen exit is never
// released, whoever asks.
func TestReleaseNeedsSeenExit(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	c := e.runningContainer(t)
	rec, err := e.s.findContainer(c)
	if err != nil {
		t.Fatal(err)
	}
	unlock := e.s.locks.lock(c)
	err = e.s.releaseLocked(ctx, rec)
	unlock()
	if err != nil || e.s.released.has(c) || !e.inShim(c) {
		t.Errorf("release of a running container: err %v, released %v, in its shim %v", err, e.s.released.has(c), e.inShim(c))
	}
	if _, err := os.Stat(filepath.Join(e.rootfsOf(c), "detached")); err == nil {
		t.Error("the running container's rootfs was detached")
	}
}
