package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestConcurrentCalls races calls on one object, as a kubelet with several
// workers (or a kubelet and an operator) may: one pod name reserved once,
// stop and remove of one container or pod at the same time all succeed, and
// nothing is left behind.
func TestConcurrentCalls(t *testing.T) {
	const n = 6
	d := startDaemon(t)
	d.pull(t, busybox)
	ctx := ctxT(t, 5*time.Minute)

	// n RunPodSandbox calls with the same metadata: one wins.
	cfg := d.podConfig("race")
	var mu sync.Mutex
	var won []string
	errs := map[codes.Code]int{}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, resp.PodSandboxId)
				d.podIDs = append(d.podIDs, resp.PodSandboxId)
			} else {
				errs[status.Code(err)]++
			}
		}()
	}
	wg.Wait()
	for _, id := range won {
		t.Cleanup(func() { d.removePod(t, id) })
	}
	if len(won) != 1 || errs[codes.AlreadyExists] != n-1 {
		t.Fatalf("%d concurrent RunPodSandbox with one name: %d succeeded, errors by code %v; want 1 and %d AlreadyExists", n, len(won), errs, n-1)
	}
	podID := won[0]

	// Stop and remove one running container from many goroutines.
	id := d.runContainer(t, podID, cfg, "victim", "sleep", "1000")
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	callErrs := make(chan error, 3*n)
	for i := 0; i < n; i++ {
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
				callErrs <- fmt.Errorf("StopContainer: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				callErrs <- fmt.Errorf("RemoveContainer: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			// Either an answer or NotFound once it is removed.
			if _, err := d.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err != nil && status.Code(err) != codes.NotFound {
				callErrs <- fmt.Errorf("ContainerStatus: %w", err)
			}
		}()
	}
	wg.Wait()
	close(callErrs)
	for err := range callErrs {
		t.Errorf("racing calls on container %s: %v", id, err)
	}
	if _, err := d.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus after the racing removes: %v, want NotFound", err)
	}

	// Stop and remove the pod (with a running container) from many
	// goroutines.
	d.runContainer(t, podID, cfg, "survivor", "sleep", "1000")
	podErrs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if _, err := d.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				podErrs <- fmt.Errorf("StopPodSandbox: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if _, err := d.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				podErrs <- fmt.Errorf("RemovePodSandbox: %w", err)
			}
		}()
	}
	wg.Wait()
	close(podErrs)
	for err := range podErrs {
		t.Errorf("racing calls on pod %s: %v", podID, err)
	}
	resp, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	if len(resp.Items) != 0 {
		t.Errorf("pods listed after the racing removes: %v", resp.Items)
	}
	for _, l := range d.leaks() {
		t.Errorf("leak after the racing removes: %s", l)
	}
}
