package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/config"
	"github.com/skiffcri/skiff/cri"
)

// runcBinary is Debian's runc, the OCI runtime the handler tests drive.
const runcBinary = "/usr/sbin/runc"

// startRuncDaemon runs a skiffd with the runtime handler "runc" (type oci,
// state under the daemon's temp dir) and returns it with runc's root.
func startRuncDaemon(t *testing.T) (*daemon, string) {
	t.Helper()
	if _, err := os.Stat(runcBinary); err != nil {
		t.Skipf("runc missing: %v", err)
	}
	var root string
	d := startDaemonWith(t, daemonOptions{runtimes: func(d *daemon) map[string]config.RuntimeConfig {
		root = filepath.Join(d.dir, "runc")
		return map[string]config.RuntimeConfig{"runc": {Type: config.RuntimeOCI, Path: runcBinary, Root: root}}
	}})
	// Registered after the daemon's clean-up, so it runs before it: what
	// runc still lists is force-deleted even when the test failed.
	t.Cleanup(func() {
		for _, id := range runcList(t, root) {
			_ = exec.Command(runcBinary, "--root", root, "delete", "--force", id).Run()
		}
	})
	return d, root
}

// runcList is what "runc list" shows under root.
func runcList(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command(runcBinary, "--root", root, "list", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("runc list: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

// runHandlerPod runs cfg with the runtime handler and removes it at the end.
func (d *daemon) runHandlerPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig, handler string) string {
	t.Helper()
	resp, err := d.rt.RunPodSandbox(ctxT(t, 2*time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox %s with handler %s: %v", cfg.Metadata.Name, handler, err)
	}
	id := resp.PodSandboxId
	d.podIDs = append(d.podIDs, id)
	t.Cleanup(func() { d.removePod(t, id) })
	return id
}

// TestRuntimeHandlerRunc runs a pod under the "runc" handler: its container
// is runc's (runc list), logs and exec work, a terminal container gets its
// terminal through the console socket, the containers survive a kill -9 of
// skiffd, and stopping and removing the pod leaves runc nothing.
func TestRuntimeHandlerRunc(t *testing.T) {
	d, root := startRuncDaemon(t)
	d.pull(t, busybox)
	ctx := ctxT(t, 5*time.Minute)

	st, err := d.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var handlers []string
	for _, h := range st.RuntimeHandlers {
		handlers = append(handlers, h.Name)
		if h.Name == "runc" && h.Features.GetUserNamespaces() {
			t.Errorf("runc 1.1 handler claims user namespaces (it cannot idmap mounts)")
		}
	}
	if !slices.Contains(handlers, "runc") {
		t.Errorf("Status lists handlers %q, want runc among them", handlers)
	}

	_, err = d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: d.podConfig("unknown-handler"), RuntimeHandler: "nope"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("RunPodSandbox with an unknown handler: %v, want NotFound naming it", err)
	}

	podCfg := d.podConfig("runc-pod")
	podID := d.runHandlerPod(t, podCfg, "runc")
	if ps, err := d.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	} else if ps.Status.RuntimeHandler != "runc" {
		t.Errorf("pod status runtime handler %q, want runc", ps.Status.RuntimeHandler)
	}
	id := d.runContainer(t, podID, podCfg, "main", "sh", "-c", "echo hello from runc; echo oops >&2; exec sleep 1000")
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	if got := runcList(t, root); !slices.Contains(got, id) {
		t.Fatalf("runc list = %q, want container %s", got, id)
	}
	logPath := filepath.Join(podCfg.LogDirectory, "main.log")
	waitLog(t, logPath, "stdout", "hello from runc", 30*time.Second)
	waitLog(t, logPath, "stderr", "oops", 30*time.Second)

	res, err := d.execSync(t, id, 10, "sh", "-c", "echo out; echo err >&2; exit 3")
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 {
		t.Errorf("ExecSync = %q %q %d, want out, err, 3", res.Stdout, res.Stderr, res.ExitCode)
	}
	// The exec ran in the container: its hostname is the pod's.
	if res, err := d.execSync(t, id, 10, "hostname"); err != nil || strings.TrimSpace(string(res.Stdout)) != podCfg.Hostname {
		t.Errorf("hostname in the container: %v %q, want %q", err, res.GetStdout(), podCfg.Hostname)
	}

	// A terminal container: runc hands the pty master over the console
	// socket.
	ttyCfg := containerConfig("tty", busybox, "sh", "-c", "tty; echo tty done; exec sleep 1000")
	ttyCfg.Tty = true
	tty := d.createContainer(t, podID, podCfg, ttyCfg)
	d.startContainer(t, tty)
	waitLog(t, filepath.Join(podCfg.LogDirectory, "tty.log"), "stdout", "tty done", 30*time.Second)
	lines := logText(readLog(t, filepath.Join(podCfg.LogDirectory, "tty.log")), "stdout")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "/dev/pts/") {
		t.Errorf("tty container's first line %q, want its terminal /dev/pts/N", lines)
	}

	// Exits while skiffd is down.
	exiter := d.runContainer(t, podID, podCfg, "exiter", "sh", "-c", "sleep 2; exit 7")
	d.waitState(t, exiter, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	d.kill9()
	time.Sleep(3 * time.Second)
	d.restart()
	if st := d.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after restart: %s, want RUNNING", st.State)
	}
	if st := d.containerStatus(t, exiter); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 {
		t.Errorf("exiter after restart: %s exit %d, want EXITED 7", st.State, st.ExitCode)
	}
	if res, err := d.execSync(t, id, 10, "echo", "after restart"); err != nil || string(res.Stdout) != "after restart\n" {
		t.Errorf("ExecSync after restart: %v %q", err, res.GetStdout())
	}

	if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := d.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("stopped container: %s exit %d, want EXITED 137 (sleep as PID 1 ignores SIGTERM)", st.State, st.ExitCode)
	}
	if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if got := runcList(t, root); slices.Contains(got, id) {
		t.Errorf("runc list after RemoveContainer = %q, still has %s", got, id)
	}
	d.removePod(t, podID)
	if got := runcList(t, root); len(got) != 0 {
		t.Errorf("runc list after RemovePodSandbox = %q, want empty", got)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("runc root %s keeps %d entries after the pod was removed", root, len(ents))
	}
}

// TestRuntimeHandlerRuncUserNamespaceRefused: runc 1.1 cannot idmap mounts,
// so a pod with a user namespace is refused before anything is made.
func TestRuntimeHandlerRuncUserNamespaceRefused(t *testing.T) {
	d, _ := startRuncDaemon(t)
	cfg := d.podConfig("runc-userns")
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: []*runtimeapi.IDMapping{{HostId: 1 << 20, ContainerId: 0, Length: 65536}},
		Gids: []*runtimeapi.IDMapping{{HostId: 1 << 20, ContainerId: 0, Length: 65536}},
	}
	_, err := d.rt.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "runc"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "user namespaces") {
		t.Errorf("user-namespaced pod on runc: %v, want FailedPrecondition about user namespaces", err)
	}
}

// TestRuntimeHandlerRuncShimKilled: when the shim of a runc pod dies,
// skiffd ends its containers through runc ("runc delete --force"), records
// them as killed (137, ShimLost), and runc is left with nothing once the
// pod is removed. The pod shares its PID namespace, so its init is the
// shim's too and is ended by its cgroup.
func TestRuntimeHandlerRuncShimKilled(t *testing.T) {
	d, root := startRuncDaemon(t)
	d.pull(t, busybox)
	podCfg := d.podConfig("runc-shim-killed")
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID := d.runHandlerPod(t, podCfg, "runc")
	// Quiet: a container that writes would die of SIGPIPE with its shim.
	id := d.runContainer(t, podID, podCfg, "quiet", "sleep", "1000")
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	if got := runcList(t, root); !slices.Contains(got, id) {
		t.Fatalf("runc list = %q, want %s", got, id)
	}
	d.killShim(t, podID)
	for deadline := time.Now().Add(20 * time.Second); len(procsOf(t, filepath.Join(d.cgroupParent, id))) != 0 || slices.Contains(runcList(t, root), id); {
		if time.Now().After(deadline) {
			t.Fatalf("20s after its shim was killed: container processes %v, runc list %q", procsOf(t, filepath.Join(d.cgroupParent, id)), runcList(t, root))
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := d.containerStatus(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != cri.ReasonShimLost || st.ExitCode != 137 {
		t.Errorf("container after its shim was killed: %s reason %q exit %d, want EXITED %s 137", st.State, st.Reason, st.ExitCode, cri.ReasonShimLost)
	}
	d.removePod(t, podID)
	if got := runcList(t, root); len(got) != 0 {
		t.Errorf("runc list after RemovePodSandbox = %q, want empty", got)
	}
}
