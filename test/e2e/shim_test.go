package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri"
)

// procsOf lists the pids in cgroup path (relative to the hierarchy roots)
// of the memory hierarchy, or the unified one on a cgroup v2 host.
func procsOf(t *testing.T, path string) []int {
	t.Helper()
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		b, err := os.ReadFile(filepath.Join(root, path, "cgroup.procs"))
		if err != nil {
			continue
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return pids
	}
	return nil
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// TestPodInitInPodCgroup checks that the init of a pod sharing a PID
// namespace lives where containerd's pause container would, in a cgroup
// named after the pod under its cgroup parent, not in skiffd's cgroup, and
// that the cgroup goes with the pod.
func TestPodInitInPodCgroup(t *testing.T) {
	d := startDaemon(t)
	podCfg := d.podConfig("pod-init-cgroup")
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID := d.runPodWith(t, podCfg)
	initCgroup := filepath.Join(d.cgroupParent, podID)
	pids := procsOf(t, initCgroup)
	if len(pids) != 1 || !strings.HasPrefix(cmdline(pids[0]), "skiff-pod-init") {
		var cmds []string
		for _, p := range pids {
			cmds = append(cmds, cmdline(p))
		}
		t.Fatalf("cgroup %s holds %v (%q), want the pod init alone", initCgroup, pids, cmds)
	}
	ctx := ctxT(t, time.Minute)
	if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if pids := procsOf(t, initCgroup); len(pids) != 0 {
		t.Errorf("cgroup %s still holds %v after StopPodSandbox", initCgroup, pids)
	}
	if left := cgroupsUnder(d.cgroupParent); len(left) != 0 {
		t.Errorf("cgroups left after StopPodSandbox: %v", left)
	}
}

// TestShimKilled kills a pod's shim with SIGKILL. skiffd notices at once,
// without being asked: every container of the pod is killed (none is left
// running unwatched, its logs cut off) and reported exited with reason
// ShimLost, StopContainer on it succeeds, and the pod turns NotReady so the
// kubelet replaces it. Stopping and removing the pod leaves nothing behind
// (the daemon's clean-up checks), the pod init included.
func TestShimKilled(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podCfg := d.podConfig("shim-killed")
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID := d.runPodWith(t, podCfg)
	var ids []string
	// Quiet containers: one that writes to its stdout would die of SIGPIPE
	// once the shim (the pipe's reader) is gone, and then be reported with
	// the unknown exit code 255 rather than as killed by skiffd.
	for _, name := range []string{"a", "b"} {
		cfg := containerConfig(name, busybox, "sleep", "1000")
		id := d.createContainer(t, podID, podCfg, cfg)
		d.startContainer(t, id)
		d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
		ids = append(ids, id)
	}
	for _, id := range ids {
		if len(procsOf(t, filepath.Join(d.cgroupParent, id))) == 0 {
			t.Fatalf("container %s has no processes in its cgroup", id)
		}
	}

	d.killShim(t, podID)

	// No CRI call until the containers' processes are gone.
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for len(procsOf(t, filepath.Join(d.cgroupParent, id))) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("container %s still has processes %v 20s after its shim was killed", id, procsOf(t, filepath.Join(d.cgroupParent, id)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	for _, id := range ids {
		st := d.containerStatus(t, id)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != cri.ReasonShimLost || !strings.Contains(st.Message, "shim") {
			t.Errorf("container %s after its shim was killed: state %v reason %q message %q exit %d, want exited, %s",
				id, st.State, st.Reason, st.Message, st.ExitCode, cri.ReasonShimLost)
		}
		if st.ExitCode != 137 {
			t.Errorf("container %s exit code %d, want 137 (SIGKILL)", id, st.ExitCode)
		}
		if _, err := d.rt.StopContainer(ctxT(t, 30*time.Second), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
			t.Errorf("StopContainer %s: %v", id, err)
		}
	}
	// skiffd turns the pod NotReady once it has ended the pod's containers,
	// which the calls above may have overtaken.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := d.rt.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod state 10s after its shim died = %v, want NOTREADY", resp.Status.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The pod init waits in the pod's cgroup for StopPodSandbox, which the
	// daemon's clean-up calls and checks.
}

// killShim kills the shim of pod podID with SIGKILL, as a crash would.
func (d *daemon) killShim(t *testing.T, podID string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.state, "shims", podID, "shim.pid"))
	if err != nil {
		t.Fatal(err)
	}
	shimPid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 shim %d: %v", shimPid, err)
	}
}
