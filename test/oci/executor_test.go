package oci_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/oci/cgroups"
	"github.com/skiffcri/skiff/oci/seccomp"
	"github.com/skiffcri/skiff/shim"
)

func TestPID1AndHostname(t *testing.T) {
	e := newExecutor(t)
	out := runOK(t, e, "pid1", sh(`echo pid=$$; hostname; readlink /proc/1/exe`))
	want := "pid=1\nskiff-test-host\n/bin/busybox\n"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestLifecycleState(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	c, output := create(t, e, "life", sh(`echo started`), newRootfs(t))
	st, err := e.State(ctx, "life")
	must(t, err)
	if st.Status != oci.StatusCreated || st.Pid != c.Pid {
		t.Fatalf("after create: %+v (pid %d)", st.State, c.Pid)
	}
	must(t, e.Start(ctx, "life"))
	if err := e.Start(ctx, "life"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("second Start: %v", err)
	}
	ws, err := c.Wait()
	must(t, err)
	if ws.Code != 0 || output() != "started\n" {
		t.Fatalf("exit %+v", ws)
	}
	st, err = e.State(ctx, "life")
	must(t, err)
	if st.Status != oci.StatusStopped {
		t.Fatalf("after exit: %s", st.Status)
	}
	if err := e.Kill(ctx, "life", unix.SIGTERM, false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("kill of a stopped container: %v", err)
	}
	if _, err := e.Exec(ctx, "life", &specs.Process{Args: []string{"true"}, Cwd: "/"}, oci.IO{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("exec in a stopped container: %v", err)
	}
	must(t, e.Delete(ctx, "life", false))
	if _, err := e.State(ctx, "life"); !errdefs.IsNotFound(err) {
		t.Fatalf("state after delete: %v", err)
	}
}

func TestExitCodeAndSignal(t *testing.T) {
	e := newExecutor(t)
	_, st := run(t, e, "exit3", sh(`exit 3`))
	if st.Code != 3 || st.Signal != 0 {
		t.Fatalf("exit: %+v", st)
	}
	c := startSleeper(t, e, "killed", nil)
	must(t, e.Kill(testCtx(t), "killed", syscall.SIGKILL, false))
	st, err := c.Wait()
	must(t, err)
	if st.Signal != syscall.SIGKILL || st.Code != 137 {
		t.Fatalf("signal: %+v", st)
	}
}

func mountinfo(out, mountpoint string) (string, bool) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == mountpoint {
			return f[5], true
		}
	}
	return "", false
}

func TestMounts(t *testing.T) {
	e := newExecutor(t)
	// A host directory with a submount, bind-mounted with rro: the
	// submount must become read-only too (mount_setattr AT_RECURSIVE).
	host := t.TempDir()
	sub := filepath.Join(host, "sub")
	must(t, os.Mkdir(sub, 0o755))
	must(t, unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	rw := t.TempDir()
	// The pod's files, as the sandbox writes them.
	pod := t.TempDir()
	for name, body := range map[string]string{"hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 10.0.0.10\n", "hostname": "skiff-test-host\n"} {
		must(t, os.WriteFile(filepath.Join(pod, name), []byte(body), 0o644))
	}

	spec := sh(`cat /proc/self/mountinfo; echo ---; cat /etc/secret; ls /etc/secretdir; echo masked-end;
		touch /rootfile 2>/dev/null && echo rootfs-writable; touch /data/sub/x 2>/dev/null && echo rro-writable;
		touch /rw/x && echo rw-ok; cat /etc/hosts /etc/resolv.conf /etc/hostname; cat /proc/keys | wc -c; ls -l /dev/null /dev/zero /dev/tty; readlink /dev/ptmx; readlink /dev/fd`)
	spec.Root.Readonly = true
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/data", Type: "bind", Source: host, Options: []string{"rbind", "rro"}},
		specs.Mount{Destination: "/rw", Type: "bind", Source: rw, Options: []string{"bind", "rw", "nosuid"}},
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(pod, "hosts"), Options: []string{"rbind", "rprivate", "rw"}},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(pod, "resolv.conf"), Options: []string{"rbind", "rprivate", "ro"}},
		specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: filepath.Join(pod, "hostname"), Options: []string{"rbind", "rprivate", "ro"}},
	)
	rootfs := newRootfs(t)
	c, output := create(t, e, "mounts", spec, rootfs)
	must(t, e.Start(testCtx(t), "mounts"))
	ws, err := c.Wait()
	must(t, err)
	out := output()
	if ws.Code != 0 {
		t.Fatalf("exit %+v:\n%s", ws, out)
	}
	// Nothing the container mounted shows up on the host.
	hostMI, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for _, l := range strings.Split(string(hostMI), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], rootfs+"/") {
			t.Errorf("container mount leaked to the host: %s", l)
		}
	}
	mi, rest, _ := strings.Cut(out, "---\n")
	for _, c := range []struct{ mp, opt string }{
		{"/", "ro"}, {"/sys", "ro"}, {"/proc/sys", "ro"}, {"/proc", "rw"},
		{"/dev/pts", "rw"}, {"/data", "ro"}, {"/data/sub", "ro"}, {"/rw", "rw"}, {"/etc/secret", "rw"},
		{"/etc/hosts", "rw"}, {"/etc/resolv.conf", "ro"}, {"/etc/hostname", "ro"},
	} {
		opts, ok := mountinfo(mi, c.mp)
		if !ok {
			t.Errorf("%s not mounted:\n%s", c.mp, mi)
			continue
		}
		if !strings.HasPrefix(opts, c.opt+",") && opts != c.opt {
			t.Errorf("%s mounted %s, want %s", c.mp, opts, c.opt)
		}
	}
	if opts, _ := mountinfo(mi, "/rw"); !strings.Contains(opts, "nosuid") {
		t.Errorf("/rw lost nosuid: %s", opts)
	}
	if !strings.HasPrefix(rest, "masked-end\n") {
		t.Errorf("masked paths readable: %q", rest)
	}
	for _, bad := range []string{"rootfs-writable", "rro-writable"} {
		if strings.Contains(rest, bad) {
			t.Errorf("%s in output:\n%s", bad, rest)
		}
	}
	for _, want := range []string{"rw-ok", "127.0.0.1 localhost\nnameserver 10.0.0.10\nskiff-test-host\n", "\n0\n", "1,   3", "1,   5", "5,   0", "pts/ptmx", "/proc/self/fd"} {
		if !strings.Contains(rest, want) {
			t.Errorf("missing %q in:\n%s", want, rest)
		}
	}
}

func TestCapabilities(t *testing.T) {
	e := newExecutor(t)
	spec := sh(`grep Cap /proc/self/status`)
	caps := []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"} // bits 0 and 10
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps, Inheritable: caps, Ambient: caps,
	}
	out := runOK(t, e, "caps", spec)
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if v := statusField(t, out, k); v != "0000000000000401" {
			t.Errorf("%s = %s, want 0000000000000401", k, v)
		}
	}

	// A non-root user keeps only what is ambient across execve.
	spec = sh(`grep Cap /proc/self/status`)
	spec.Process.User = specs.User{UID: 1000, GID: 1000}
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:    []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"},
		Effective:   []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"},
		Permitted:   []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"},
		Inheritable: []string{"CAP_NET_BIND_SERVICE"},
		Ambient:     []string{"CAP_NET_BIND_SERVICE"},
	}
	out = runOK(t, e, "caps-user", spec)
	for k, want := range map[string]string{
		"CapInh": "0000000000000400", "CapPrm": "0000000000000400", "CapEff": "0000000000000400",
		"CapBnd": "0000000000000421", "CapAmb": "0000000000000400",
	} {
		if v := statusField(t, out, k); v != want {
			t.Errorf("non-root %s = %s, want %s", k, v, want)
		}
	}
}

func TestUserAndGroups(t *testing.T) {
	e := newExecutor(t)
	spec := sh(`grep -E '^(Uid|Gid|Groups)' /proc/self/status; echo home=$HOME; umask`)
	umask := uint32(0o027)
	spec.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}, Umask: &umask}
	out := runOK(t, e, "user", spec)
	if v := statusField(t, out, "Uid"); strings.Join(strings.Fields(v), " ") != "1000 1000 1000 1000" {
		t.Errorf("Uid: %s", v)
	}
	if v := statusField(t, out, "Gid"); strings.Join(strings.Fields(v), " ") != "1000 1000 1000 1000" {
		t.Errorf("Gid: %s", v)
	}
	if v := statusField(t, out, "Groups"); v != "10 20" {
		t.Errorf("Groups: %q", v)
	}
	if !strings.Contains(out, "home=/home/user\n") || !strings.Contains(out, "0027") {
		t.Errorf("home/umask:\n%s", out)
	}
}

func TestRlimitsNoNewPrivsOOMScore(t *testing.T) {
	e := newExecutor(t)
	spec := sh(`ulimit -n; ulimit -c; grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj`)
	spec.Process.Rlimits = []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 1000, Hard: 1000},
		{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
	}
	adj := 500
	spec.Process.OOMScoreAdj = &adj
	var cur []byte
	out := runOK(t, e, "rlimits", spec)
	if !strings.HasPrefix(out, "1000\n0\n") {
		t.Errorf("rlimits: %q", out)
	}
	if v := statusField(t, out, "NoNewPrivs"); v != "1" {
		t.Errorf("NoNewPrivs = %s", v)
	}
	if !strings.HasSuffix(out, "\n500\n") {
		t.Errorf("oom_score_adj: %q", out)
	}

	// Without RLIMIT_NOFILE in the spec the process gets the limit a plain
	// fork+exec from this process would give, not the one the Go runtime
	// raised inside the init.
	// Lower our soft limit first so that the init's raise is visible.
	var lim syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	lowered := lim
	lowered.Cur = min(lim.Cur, 4096) - 1
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered))
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	host, err := exec.Command("sh", "-c", "ulimit -n").Output()
	must(t, err)
	if out := runOK(t, e, "nofile-default", sh(`ulimit -n`)); out != string(host) {
		t.Errorf("default NOFILE %q, want the host's %q", out, host)
	}

	// Root here lacks CAP_SYS_RESOURCE: a value below ours is clamped, not fatal.
	cur, err = os.ReadFile("/proc/self/oom_score_adj")
	must(t, err)
	spec = sh(`cat /proc/self/oom_score_adj`)
	low := -999
	spec.Process.OOMScoreAdj = &low
	spec.Process.NoNewPrivileges = false
	out = runOK(t, e, "oom-low", spec)
	if out != "-999\n" && out != string(cur) {
		t.Errorf("oom_score_adj %q, want -999 or current %q", out, cur)
	}
}

func TestSysctls(t *testing.T) {
	e := newExecutor(t)
	spec := sh(`cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_forward`)
	spec.Linux.Sysctl = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_forward": "1"}
	if out := runOK(t, e, "sysctl", spec); out != "1\n1\n" {
		t.Fatalf("sysctls: %q", out)
	}
	// Not namespaced: refused before anything runs.
	spec = sh(`true`)
	spec.Linux.Sysctl = map[string]string{"vm.swappiness": "10"}
	_, err := e.Create(testCtx(t), "bad-sysctl", oci.Bundle{Spec: spec, Rootfs: newRootfs(t)}, oci.IO{})
	if err == nil || !strings.Contains(err.Error(), "not namespaced") {
		t.Fatalf("vm.swappiness: %v", err)
	}
}

func TestJoinPodNamespaces(t *testing.T) {
	e := newExecutor(t)
	ns := pinNamespaces(t)
	spec := sh(`readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname`)
	spec.Hostname = ""
	spec.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
		{Type: specs.NetworkNamespace, Path: ns["net"]},
		{Type: specs.IPCNamespace, Path: ns["ipc"]},
		{Type: specs.UTSNamespace, Path: ns["uts"]},
	}
	out := runOK(t, e, "joined", spec)
	want := fmt.Sprintf("net:[%d]\nipc:[%d]\nuts:[%d]\n", inode(t, ns["net"]), inode(t, ns["ipc"]), inode(t, ns["uts"]))
	if !strings.HasPrefix(out, want) {
		t.Fatalf("namespaces: got %q, want prefix %q", out, want)
	}
	// The executor's clean threads are untouched by the join (the thread
	// that joined was discarded).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if inode(t, "/proc/thread-self/ns/net") == inode(t, ns["net"]) {
		t.Fatal("test process ended up in the pod's netns")
	}
}

func TestJoinPIDNamespace(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	first, _ := create(t, e, "pidns-a", sh(`exec sleep 100`), newRootfs(t))
	must(t, e.Start(ctx, "pidns-a"))
	pidns := fmt.Sprintf("/proc/%d/ns/pid", first.Pid)
	spec := sh(`echo pid=$$; readlink /proc/self/ns/pid; cat /proc/1/comm`)
	for i, n := range spec.Linux.Namespaces {
		if n.Type == specs.PIDNamespace {
			spec.Linux.Namespaces[i].Path = pidns
		}
	}
	out := runOK(t, e, "pidns-b", spec)
	want := fmt.Sprintf("pid:[%d]\nsleep\n", inode(t, pidns))
	if strings.HasPrefix(out, "pid=1\n") || !strings.HasSuffix(out, want) {
		t.Fatalf("got %q, want a pid != 1 and %q", out, want)
	}
	must(t, e.Kill(ctx, "pidns-a", unix.SIGKILL, false))
	first.Wait()
}

// startSleeper runs a long-lived container and returns it.
func startSleeper(t *testing.T, e *oci.Executor, id string, spec *specs.Spec) *oci.Container {
	t.Helper()
	if spec == nil {
		spec = sh(`exec sleep 1000`)
	}
	c, _ := create(t, e, id, spec, newRootfs(t))
	must(t, e.Start(testCtx(t), id))
	t.Cleanup(func() {
		e.Kill(context.Background(), id, unix.SIGKILL, true)
		c.Wait()
	})
	return c
}

func TestExec(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	spec := sh(`exec sleep 1000`)
	spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-exec"
	c := startSleeper(t, e, "exec", spec)
	r, w, err := os.Pipe()
	must(t, err)
	defer r.Close()
	p := &specs.Process{
		Args: []string{"sh", "-c", "readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid; cat /proc/1/comm; hostname; grep CapEff /proc/self/status; cat /proc/self/cgroup > /tmp/exec; cat /proc/1/cgroup > /tmp/init; cmp /tmp/exec /tmp/init && echo same-cgroups"},
		Env:  []string{"PATH=/bin"},
		Cwd:  "/",
	}
	proc, err := e.Exec(ctx, "exec", p, oci.IO{Stdout: w, Stderr: w})
	w.Close()
	must(t, err)
	st, err := proc.Wait()
	must(t, err)
	out, _ := readAll(r)
	if st.Code != 0 {
		t.Fatalf("exec exit %+v: %s", st, out)
	}
	want := fmt.Sprintf("mnt:[%d]\npid:[%d]\nsleep\nskiff-test-host\nCapEff:\t00000000a80425fb\nsame-cgroups\n",
		inode(t, fmt.Sprintf("/proc/%d/ns/mnt", c.Pid)), inode(t, fmt.Sprintf("/proc/%d/ns/pid", c.Pid)))
	if out != want {
		t.Fatalf("exec output %q, want %q", out, want)
	}

	// A missing binary fails Exec itself, with the cause.
	p.Args = []string{"/no/such"}
	if _, err := e.Exec(ctx, "exec", p, oci.IO{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("exec of missing binary: %v", err)
	}
}

func readAll(r *os.File) (string, error) {
	var b strings.Builder
	_, err := bufio.NewReader(r).WriteTo(&b)
	return b.String(), err
}

func TestExecTTYAndResize(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	startSleeper(t, e, "exectty", nil)
	p := &specs.Process{
		Terminal:    true,
		ConsoleSize: &specs.Box{Height: 20, Width: 80},
		Args:        []string{"sh", "-c", "tty; stty size; read x; stty size"},
		Env:         []string{"PATH=/bin"},
		Cwd:         "/",
	}
	proc, err := e.Exec(ctx, "exectty", p, oci.IO{})
	must(t, err)
	defer proc.Console.Close()
	br := bufio.NewReader(proc.Console)
	line := func() string {
		s, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read console: %v (got %q)", err, s)
		}
		return strings.TrimRight(s, "\r\n")
	}
	if got := line(); got != "/dev/pts/0" {
		t.Fatalf("tty = %q", got)
	}
	if got := line(); got != "20 80" {
		t.Fatalf("initial size = %q", got)
	}
	must(t, proc.Resize(100, 30))
	_, err = proc.Console.Write([]byte("\n"))
	must(t, err)
	line() // echo of the newline
	if got := line(); got != "30 100" {
		t.Fatalf("size after resize = %q", got)
	}
	st, err := proc.Wait()
	must(t, err)
	if st.Code != 0 {
		t.Fatalf("exit %+v", st)
	}
}

func TestInitTerminal(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	spec := sh(`tty; readlink /proc/self/fd/0`)
	spec.Process.Terminal = true
	c, _ := create(t, e, "inittty", spec, newRootfs(t))
	if c.Console == nil {
		t.Fatal("no console")
	}
	defer c.Console.Close()
	must(t, e.Start(ctx, "inittty"))
	br := bufio.NewReader(c.Console)
	got, _ := br.ReadString('\n')
	if strings.TrimSpace(got) != "/dev/pts/0" {
		t.Fatalf("tty = %q", got)
	}
	c.Wait()
}

func TestKillAndDeleteFromAnotherExecutor(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	spec := sh(`sleep 1000 & exec sleep 1000`)
	spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-kill"
	c := startSleeper(t, e, "killer", spec)
	// A second executor over the same state dir stands for a restarted daemon.
	e2 := &oci.Executor{StateDir: e.StateDir, InitPath: shimPath, NewCgroup: oci.NewCgroupfs()}
	st, err := e2.State(ctx, "killer")
	must(t, err)
	if st.Status != oci.StatusRunning || st.Pid != c.Pid {
		t.Fatalf("state %+v", st.State)
	}
	if err := e2.Delete(ctx, "killer", false); err == nil {
		t.Fatal("delete of a running container without force succeeded")
	}
	must(t, e2.Kill(ctx, "killer", unix.SIGKILL, true))
	ws, err := c.Wait()
	must(t, err)
	if ws.Signal != unix.SIGKILL {
		t.Fatalf("exit %+v", ws)
	}
	st, err = e2.State(ctx, "killer")
	must(t, err)
	if st.Status != oci.StatusStopped {
		t.Fatalf("after kill: %s", st.Status)
	}
	must(t, e2.Delete(ctx, "killer", false))
	if _, err := cgroups.Load(spec.Linux.CgroupsPath); !errdefs.IsNotFound(err) {
		t.Fatalf("cgroup left after delete: %v", err)
	}
}

func TestCreateErrorsNameTheCause(t *testing.T) {
	e := newExecutor(t)
	for _, c := range []struct {
		name string
		mod  func(*specs.Spec)
		want string
	}{
		{"bad-mount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "nosuchfs", Source: "none"})
		}, "mount none on /x (nosuchfs): no such device"},
		{"no-binary", func(s *specs.Spec) { s.Process.Args = []string{"nosuchcmd"} }, `"nosuchcmd": executable file not found`},
		{"bad-cap", func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_BOGUS"} }, `unknown capability "CAP_BOGUS"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := sh(`true`)
			spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-" + c.name
			c.mod(spec)
			_, err := e.Create(testCtx(t), c.name, oci.Bundle{Spec: spec, Rootfs: newRootfs(t)}, oci.IO{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(e.StateDir, c.name)); !os.IsNotExist(err) {
				t.Fatalf("state dir left behind: %v", err)
			}
			if _, err := cgroups.Load(spec.Linux.CgroupsPath); !errdefs.IsNotFound(err) {
				t.Fatalf("cgroup left behind: %v", err)
			}
		})
	}
}

func TestMemoryLimitAndOOMKill(t *testing.T) {
	e := newExecutor(t)
	if _, err := cgroups.DetectLayout(); err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	limit := int64(32 << 20)
	// dd's 128M buffer does not fit: the init itself is OOM-killed.
	spec := sh(`cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; exec dd if=/dev/zero of=/dev/null bs=128M count=1`)
	spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-oom"
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	c, output := create(t, e, "oom", spec, newRootfs(t))
	must(t, e.Start(testCtx(t), "oom"))
	ws, err := c.Wait()
	must(t, err)
	out := output()
	if !strings.HasPrefix(out, strconv.FormatInt(limit, 10)+"\n") {
		t.Errorf("limit not visible inside: %q", out)
	}
	if ws.Signal != unix.SIGKILL {
		t.Fatalf("dd of 128M under a 32M limit: exit %+v, output %q", ws, out)
	}
	m, err := cgroups.Load(spec.Linux.CgroupsPath)
	must(t, err)
	n, err := m.OOMKillCount()
	must(t, err)
	if n == 0 {
		t.Fatalf("no OOM kill counted (exit %+v, out %q)", ws, out)
	}
}

func TestSeccomp(t *testing.T) {
	e := newExecutor(t)
	errno := uint(unix.EPERM)
	denyMkdir := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{{
			Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &errno,
		}},
	}
	for _, c := range []struct {
		name    string
		profile *specs.LinuxSeccomp
		nnp     bool
		user    uint32
		script  string
		want    []string
	}{
		{"runtime-default", seccomp.RuntimeDefault(), true, 0,
			`grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo ok`, []string{"Seccomp:\t2", "NoNewPrivs:\t1", "ok"}},
		{"deny-mkdir", denyMkdir, true, 0,
			`mkdir /tmp/x; echo rc=$?`, []string{"Operation not permitted", "rc=1"}},
		// Without no_new_privs the filter is loaded before the user switch,
		// while CAP_SYS_ADMIN is still there.
		{"deny-mkdir-without-nnp-as-user", denyMkdir, false, 1000,
			`grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/x; echo rc=$?`,
			[]string{"Seccomp:\t2", "NoNewPrivs:\t0", "Operation not permitted", "rc=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := sh(c.script)
			spec.Linux.Seccomp = c.profile
			spec.Process.NoNewPrivileges = c.nnp
			spec.Process.User.UID = c.user
			spec.Process.User.GID = c.user
			out := runOK(t, e, c.name, spec)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
		})
	}
}

func TestDeviceCgroupRules(t *testing.T) {
	e := newExecutor(t)
	c := func(major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
	}
	spec := sh(`echo hi > /dev/null && echo null-ok; head -c 3 /dev/zero | wc -c; tty < /dev/tty 2>&1 | head -c0;
		mknod /dev/mem2 c 1 1 && head -c 1 /dev/mem2 > /dev/null 2>&1 || echo mem-denied`)
	spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-dev"
	spec.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		c(1, 3), c(1, 5), c(1, 7), c(1, 8), c(1, 9), c(5, 0), c(5, 2), c(136, -1),
	}}
	out := runOK(t, e, "devices", spec)
	for _, w := range []string{"null-ok\n", "3\n", "mem-denied\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
}

func TestRootfsPropagation(t *testing.T) {
	e := newExecutor(t)
	for _, c := range []struct {
		prop   string
		shared bool
	}{{"rshared", true}, {"rprivate", false}, {"rslave", false}} {
		t.Run(c.prop, func(t *testing.T) {
			spec := sh(`grep ' / / ' /proc/self/mountinfo`)
			spec.Linux.RootfsPropagation = c.prop
			out := runOK(t, e, "prop-"+c.prop, spec)
			if strings.Contains(out, " shared:") != c.shared {
				t.Fatalf("%s: / is %q", c.prop, out)
			}
		})
	}
}

func TestDeleteCreatedContainer(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	spec := sh(`true`)
	spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-created"
	c, _ := create(t, e, "created", spec, newRootfs(t))
	// A created container may be deleted without force: it never ran.
	must(t, e.Delete(ctx, "created", false))
	ws, err := c.Wait()
	must(t, err)
	if ws.Signal != unix.SIGKILL {
		t.Fatalf("init exit %+v", ws)
	}
	if err := e.Start(ctx, "created"); !errdefs.IsNotFound(err) {
		t.Fatalf("start after delete: %v", err)
	}
	if _, err := cgroups.Load(spec.Linux.CgroupsPath); !errdefs.IsNotFound(err) {
		t.Fatalf("cgroup left: %v", err)
	}
}

func TestRuntimeCLI(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	bundle := t.TempDir()
	writeBundle := func(script string) {
		spec := sh(script)
		spec.Root.Path = newRootfs(t)
		spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-cli"
		b, err := json.Marshal(spec)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644))
	}
	// Output goes to a file, not a pipe: a created container's init keeps
	// the CLI's stdio open, so reading a pipe to EOF would block.
	outDir := t.TempDir()
	cli := func(args ...string) (string, int) {
		f, err := os.CreateTemp(outDir, "out")
		must(t, err)
		defer f.Close()
		cmd := exec.Command(shimPath, append([]string{"runtime", "--root", root}, args...)...)
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Run()
		out, rerr := os.ReadFile(f.Name())
		must(t, rerr)
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		must(t, err)
		return string(out), 0
	}
	t.Cleanup(func() { cli("delete", "--force", "cli") })

	writeBundle(`echo hello; exit 3`)
	if out, code := cli("run", "--bundle", bundle, "cli-run"); code != 3 || out != "hello\n" {
		t.Fatalf("run: code %d, output %q", code, out)
	}

	writeBundle(`exec sleep 1000`)
	if out, code := cli("create", "--bundle", bundle, "cli"); code != 0 {
		t.Fatalf("create: %d %s", code, out)
	}
	status := func() string {
		out, code := cli("state", "cli")
		if code != 0 {
			t.Fatalf("state: %d %s", code, out)
		}
		var st specs.State
		must(t, json.Unmarshal([]byte(out), &st))
		return string(st.Status)
	}
	if s := status(); s != "created" {
		t.Fatalf("after create: %s", s)
	}
	cli("start", "cli")
	if s := status(); s != "running" {
		t.Fatalf("after start: %s", s)
	}
	if out, code := cli("exec", "cli", "cat", "/proc/1/comm"); code != 0 || out != "sleep\n" {
		t.Fatalf("exec: %d %q", code, out)
	}
	// update sets new limits on the container's cgroup, as the shim's
	// update operation does for UpdateContainerResources.
	resFile := filepath.Join(t.TempDir(), "resources.json")
	must(t, os.WriteFile(resFile, []byte(`{"memory":{"limit":50331648}}`), 0o644))
	if out, code := cli("update", "--resources", resFile, "cli"); code != 0 {
		t.Fatalf("update: %d %s", code, out)
	}
	if out, code := cli("exec", "cli", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"); code != 0 || out != "50331648\n" {
		t.Fatalf("memory limit after update: %d %q", code, out)
	}
	if out, code := cli("kill", "--all", "cli", "KILL"); code != 0 {
		t.Fatalf("kill: %d %s", code, out)
	}
	// The init is no child of ours: it is reparented and reaped elsewhere.
	deadline := time.Now().Add(10 * time.Second)
	for status() != "stopped" {
		if time.Now().After(deadline) {
			t.Fatal("container did not stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, code := cli("delete", "cli"); code != 0 {
		t.Fatalf("delete: %d %s", code, out)
	}
	// Gone: the commands say so with their own exit status, which skiffd
	// tells from other failures.
	for _, args := range [][]string{{"state", "cli"}, {"delete", "--force", "cli"}, {"kill", "cli", "KILL"}} {
		if out, code := cli(args...); code != shim.RuntimeExitNotFound {
			t.Errorf("%s after delete: exit %d (%s), want %d", args[0], code, out, shim.RuntimeExitNotFound)
		}
	}

	// kill-cgroup ends every process of a cgroup (a pod init's, after its
	// shim died) and removes it; a cgroup that is gone is no error.
	cgPath := "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-killcg"
	cg, err := cgroups.New(cgPath)
	must(t, err)
	t.Cleanup(func() { cg.Destroy(context.Background()) })
	sleeper := exec.Command("sleep", "1000")
	must(t, sleeper.Start())
	t.Cleanup(func() { sleeper.Process.Kill() })
	must(t, cg.Apply(sleeper.Process.Pid))
	if out, code := cli("kill-cgroup", cgPath); code != 0 {
		t.Fatalf("kill-cgroup: %d %s", code, out)
	}
	if err := sleeper.Wait(); err == nil || sleeper.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the cgroup's process ended with %v, want SIGKILL", err)
	}
	if _, err := cgroups.Load(cgPath); !errdefs.IsNotFound(err) {
		t.Errorf("cgroup after kill-cgroup: %v, want it gone", err)
	}
	if out, code := cli("kill-cgroup", cgPath); code != 0 {
		t.Errorf("kill-cgroup of a missing cgroup: %d %s", code, out)
	}
}
