package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerLifecycleAndLogs(t *testing.T) {
	d := startDaemon(t)
	ctx := ctxT(t, 5*time.Minute)
	imageRef := d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "ctrs")

	id := d.createContainer(t, podID, podCfg, containerConfig("talker", busybox, "sh", "-c", "echo hello; echo err >&2; sleep 1000"))
	st := d.containerStatus(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("after CreateContainer: state %s, want CREATED", st.State)
	}
	logPath := filepath.Join(podCfg.LogDirectory, "talker.log")
	if st.LogPath != logPath {
		t.Errorf("ContainerStatus log path %q, want %q", st.LogPath, logPath)
	}
	d.startContainer(t, id)
	st = d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	if st.StartedAt == 0 || st.ImageRef == "" || st.Image.GetImage() == "" {
		t.Errorf("running ContainerStatus: startedAt %d, imageRef %q, image %v; want all set", st.StartedAt, st.ImageRef, st.Image)
	}
	if st.ImageRef != imageRef && !strings.Contains(st.ImageRef, "@sha256:") {
		t.Errorf("ContainerStatus image ref %q, want the pulled %q or a digest reference", st.ImageRef, imageRef)
	}

	waitLog(t, logPath, "stdout", "hello", 30*time.Second)
	// The leak check must see container processes (by their cgroup). The
	// process is sh, or sleep once sh has exec'd it: both name "sleep 1000".
	if ps := processesUnder(d.dir, d.cmdPid()); !slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(p, "sleep 1000") }) {
		t.Errorf("leak check does not see the running container's sleep among %q", ps)
	}
	lines := waitLog(t, logPath, "stderr", "err", 30*time.Second)
	for _, l := range lines {
		if l.Tag != "F" {
			t.Errorf("log line %+v: tag %s, want F (short lines are full)", l, l.Tag)
		}
	}
	if got := logText(lines, "stdout"); !slices.Equal(got, []string{"hello"}) {
		t.Errorf("stdout log lines %q, want [hello]", got)
	}
	if got := logText(lines, "stderr"); !slices.Equal(got, []string{"err"}) {
		t.Errorf("stderr log lines %q, want [err]", got)
	}

	// ps: by pod, by state, by label.
	ps := func(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
		t.Helper()
		resp, err := d.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
		if err != nil {
			t.Fatalf("ListContainers: %v", err)
		}
		return resp.Containers
	}
	if got := ps(&runtimeapi.ContainerFilter{PodSandboxId: podID}); len(got) != 1 || got[0].Id != id || got[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ListContainers of the pod: %v, want %s running", got, id)
	}
	if got := ps(&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}); len(got) != 0 {
		t.Errorf("ListContainers exited: %v, want none", got)
	}
	if got := ps(&runtimeapi.ContainerFilter{LabelSelector: map[string]string{"container": "talker"}}); len(got) != 1 {
		t.Errorf("ListContainers by label: %v, want one", got)
	}

	// Stop with a timeout: sh ignores nothing, so SIGTERM ends it (143), or
	// SIGKILL after the timeout (137).
	if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	st = d.containerStatus(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("after StopContainer: state %s, want EXITED", st.State)
	}
	if st.ExitCode != 137 && st.ExitCode != 143 {
		t.Errorf("after StopContainer: exit code %d, want 137 or 143", st.ExitCode)
	}
	if st.Reason != "Error" {
		t.Errorf("after StopContainer: reason %q, want Error", st.Reason)
	}
	if st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Errorf("after StopContainer: startedAt %d finishedAt %d", st.StartedAt, st.FinishedAt)
	}
	if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Errorf("second StopContainer: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer #%d: %v", i+1, err)
		}
	}
	if _, err := d.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus of a removed container: %v, want NotFound", err)
	}
	for _, m := range mountsUnder(d.state) {
		if strings.Contains(m, id) {
			t.Errorf("mount of the removed container left: %s", m)
		}
	}

	// A line longer than any buffer is split into P parts and a final F
	// part that join back to the whole line; the next line is intact.
	t.Run("longline", func(t *testing.T) {
		const n = 100000
		id := d.runContainer(t, podID, podCfg, "longline", "sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' a; echo; echo after", n))
		d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		lines := readLog(t, filepath.Join(podCfg.LogDirectory, "longline.log"))
		got := logText(lines, "stdout")
		if len(got) != 2 || got[0] != strings.Repeat("a", n) || got[1] != "after" {
			short := make([]string, len(got))
			for i, l := range got {
				short[i] = fmt.Sprintf("%d bytes %.20q", len(l), l)
			}
			t.Fatalf("long line log: %v, want a line of %d a's then \"after\"", short, n)
		}
		partial := 0
		for _, l := range lines {
			if l.Tag == "P" {
				partial++
			}
		}
		t.Logf("a %d-byte line was logged as %d partial and 1 full entries", n, partial)
	})

	// A process that ignores SIGTERM is killed when the timeout ends.
	t.Run("stubborn", func(t *testing.T) {
		id := d.runContainer(t, podID, podCfg, "stubborn", "sh", "-c", "trap '' TERM; while true; do sleep 1; done")
		d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
		if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		st := d.containerStatus(t, id)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || st.Reason != "Error" {
			t.Errorf("after StopContainer: %s exit code %d reason %q, want EXITED 137 Error", st.State, st.ExitCode, st.Reason)
		}
	})

	// Exit codes and reasons of containers that end on their own.
	for _, tc := range []struct {
		name   string
		script string
		code   int32
		reason string
	}{
		{"exit3", "exit 3", 3, "Error"},
		{"exit0", "exit 0", 0, "Completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := d.runContainer(t, podID, podCfg, tc.name, "sh", "-c", tc.script)
			st := d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
			if st.ExitCode != tc.code || st.Reason != tc.reason {
				t.Errorf("ContainerStatus: exit code %d reason %q, want %d %q", st.ExitCode, st.Reason, tc.code, tc.reason)
			}
		})
	}
}

func TestExecSync(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podCfg := d.podConfig("exec")
	podCfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.98.0.53"}, Searches: []string{"e2e.skiff.test"}, Options: []string{"ndots:2"}}
	podID := d.runPodWith(t, podCfg)
	id := d.runContainer(t, podID, podCfg, "sleeper", "sleep", "1000")
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

	resp, err := d.execSync(t, id, 0, "sh", "-c", "echo out; echo err >&2; exit 5")
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if resp.ExitCode != 5 || string(resp.Stdout) != "out\n" || string(resp.Stderr) != "err\n" {
		t.Errorf("ExecSync: exit %d stdout %q stderr %q, want 5 \"out\\n\" \"err\\n\"", resp.ExitCode, resp.Stdout, resp.Stderr)
	}
	resp, err = d.execSync(t, id, 10, "hostname")
	if err != nil || resp.ExitCode != 0 || string(resp.Stdout) != "exec\n" {
		t.Errorf("ExecSync hostname: %v %v, want \"exec\\n\" (the pod hostname)", resp, err)
	}
	// The pod's hosts file names the pod IP with the hostname.
	pst, err := d.rt.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	resp, err = d.execSync(t, id, 10, "cat", "/etc/hosts")
	if err != nil {
		t.Fatalf("ExecSync cat /etc/hosts: %v", err)
	}
	if ip := pst.Status.GetNetwork().GetIp(); !strings.Contains(string(resp.Stdout), ip) || !strings.Contains(string(resp.Stdout), "exec") {
		t.Errorf("/etc/hosts in the container lacks the pod IP %s and hostname:\n%s", ip, resp.Stdout)
	}

	resp, err = d.execSync(t, id, 10, "cat", "/etc/resolv.conf")
	if err != nil {
		t.Fatalf("ExecSync cat /etc/resolv.conf: %v", err)
	}
	for _, want := range []string{"nameserver 10.98.0.53", "search e2e.skiff.test", "options ndots:2"} {
		if !strings.Contains(string(resp.Stdout), want) {
			t.Errorf("/etc/resolv.conf from the pod's DNSConfig lacks %q:\n%s", want, resp.Stdout)
		}
	}

	// A command that outlives its timeout fails the call, and is gone
	// afterwards (the exec'd process itself, as critest checks; children
	// it forked are not promised to die with it).
	_, err = d.execSync(t, id, 1, "sleep", "600")
	if err == nil {
		t.Fatal("ExecSync of sleep 600 with timeout 1s succeeded")
	}
	t.Logf("ExecSync past its timeout: %v", err)
	// The bracket keeps the pattern from matching its own command line.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = d.execSync(t, id, 10, "sh", "-c", "ps -o args | grep -c '[s]leep 600' || true")
		if err != nil {
			t.Fatalf("ExecSync ps: %v", err)
		}
		if strings.TrimSpace(string(resp.Stdout)) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the timed-out exec process is still running 10s later: ps count %q", resp.Stdout)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A missing binary is an error of the exec, not of the container.
	resp, err = d.execSync(t, id, 10, "/no/such/binary")
	if err == nil && resp.ExitCode == 0 {
		t.Errorf("ExecSync of a missing binary: exit 0, want an error or a non-zero exit code")
	}
	if st := d.containerStatus(t, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container state after execs: %s, want RUNNING", st.State)
	}

	// Exec in a stopped container fails.
	if _, err := d.rt.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if _, err := d.execSync(t, id, 10, "true"); err == nil {
		t.Errorf("ExecSync in a stopped container succeeded")
	}
}

// TestReopenContainerLog rotates a busy container's log the way the kubelet
// does (rename, then ReopenContainerLog) and checks that the old and the new
// file together hold every line exactly once.
func TestReopenContainerLog(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "rotate")
	id := d.runContainer(t, podID, podCfg, "counter", "sh", "-c", counterScript)
	logPath := filepath.Join(podCfg.LogDirectory, "counter.log")
	waitLog(t, logPath, "stdout", "20", 30*time.Second)

	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	_, err := d.rt.ReopenContainerLog(ctxT(t, 30*time.Second), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ReopenContainerLog: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(logPath); err == nil && len(readLog(t, logPath)) >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new log at %s 30s after ReopenContainerLog", logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := d.rt.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	old, cur := readLog(t, rotated), readLog(t, logPath)
	all := append(logText(old, "stdout"), logText(cur, "stdout")...)
	for n, l := range all {
		if l != strconv.Itoa(n) {
			t.Fatalf("line %d of rotated+new log is %q, want %d (%d lines in the rotated file, %d in the new one)", n, l, n, len(old), len(cur))
		}
	}
	t.Logf("%d lines before the rotation, %d after", len(old), len(cur))

	// Reopening the log of a stopped container fails: nothing writes it.
	if _, err := d.rt.ReopenContainerLog(ctxT(t, 30*time.Second), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err == nil {
		t.Errorf("ReopenContainerLog of a stopped container succeeded")
	}
}

// TestUnsetPIDModeInPodSharingNone creates a container that leaves its PID
// namespace mode unset (the proto default, POD), as minimal CRI clients do,
// in a pod whose sandbox shares no PID namespace (CONTAINER): it runs in a
// PID namespace of its own, where its process is PID 1.
func TestUnsetPIDModeInPodSharingNone(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "unset-pid")
	cfg := containerConfig("c", busybox, "sh", "-c", "echo pid=$$; exec sleep 1000")
	cfg.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD, Ipc: runtimeapi.NamespaceMode_POD,
	}
	id := d.createContainer(t, podID, podCfg, cfg)
	d.startContainer(t, id)
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	waitLog(t, filepath.Join(podCfg.LogDirectory, "c.log"), "stdout", "pid=1", 30*time.Second)
}

// TestCgroupFilesystemInContainer checks that a container sees its own
// cgroup at /sys/fs/cgroup, where language runtimes read their limits: its
// memory limit, read-only unless the container is privileged.
func TestCgroupFilesystemInContainer(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	const limit = 64 << 20
	// v1 and hybrid hosts: one directory per hierarchy; unified: memory.max.
	const show = `if [ -d /sys/fs/cgroup/memory ]; then cat /sys/fs/cgroup/memory/memory.limit_in_bytes; else cat /sys/fs/cgroup/memory.max; fi`
	for _, tc := range []struct {
		name       string
		privileged bool
	}{{"unprivileged", false}, {"privileged", true}} {
		t.Run(tc.name, func(t *testing.T) {
			podCfg := d.podConfig("cgroupfs-" + tc.name)
			podCfg.Linux.SecurityContext.Privileged = tc.privileged
			podID := d.runPodWith(t, podCfg)
			cfg := containerConfig("c", busybox, "sleep", "1000")
			cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit}
			cfg.Linux.SecurityContext.Privileged = tc.privileged
			id := d.createContainer(t, podID, podCfg, cfg)
			d.startContainer(t, id)
			d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

			resp, err := d.execSync(t, id, 10, "sh", "-c", show)
			if err != nil {
				t.Fatalf("ExecSync: %v", err)
			}
			if got := strings.TrimSpace(string(resp.Stdout)); resp.ExitCode != 0 || got != strconv.Itoa(limit) {
				t.Fatalf("memory limit in /sys/fs/cgroup = %q (exit %d, stderr %q), want %d", got, resp.ExitCode, resp.Stderr, limit)
			}
			// The cgroup shown is the container's own: it holds the
			// container's processes and no child cgroups of other pods.
			resp, err = d.execSync(t, id, 10, "sh", "-c",
				`d=/sys/fs/cgroup/memory; [ -d $d ] || d=/sys/fs/cgroup; grep -c . $d/cgroup.procs; find $d -mindepth 1 -type d | wc -l`)
			if err != nil {
				t.Fatalf("ExecSync: %v", err)
			}
			if f := strings.Fields(string(resp.Stdout)); len(f) != 2 || f[1] != "0" {
				t.Errorf("container's memory cgroup: procs count and subdirectories = %q, want no subdirectories", resp.Stdout)
			}
			// On a v1 or hybrid host no cgroup2 mount shows (as with runc):
			// the kubelet's resize checks take one as "cgroup v2".
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
				resp, err := d.execSync(t, id, 10, "sh", "-c", "grep -c ' cgroup2 ' /proc/self/mountinfo")
				if err != nil {
					t.Fatalf("ExecSync: %v", err)
				}
				if got := strings.TrimSpace(string(resp.Stdout)); got != "0" {
					t.Errorf("cgroup2 mounts in the container of a v1/hybrid host: %q, want none", got)
				}
			}
			resp, err = d.execSync(t, id, 10, "sh", "-c", "mkdir /sys/fs/cgroup/pids/x 2>/dev/null || mkdir /sys/fs/cgroup/x")
			if err != nil {
				t.Fatalf("ExecSync: %v", err)
			}
			if writable := resp.ExitCode == 0; writable != tc.privileged {
				t.Errorf("mkdir under /sys/fs/cgroup: exit %d (stderr %q); want writable = %v", resp.ExitCode, resp.Stderr, tc.privileged)
			}
			if tc.privileged {
				_, _ = d.execSync(t, id, 10, "sh", "-c", "rmdir /sys/fs/cgroup/pids/x 2>/dev/null || rmdir /sys/fs/cgroup/x")
			}
		})
	}
}
