// Package sandbox_test exercises package sandbox on the real kernel: pinned
// namespaces, hostname, sysctls and /dev/shm. Needs root.
package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/sandbox"
	"github.com/skiffcri/skiff/sysctl"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
}

// newPod creates namespaces under a temp dir and removes them at the end.
func newPod(t *testing.T, kinds sandbox.NamespaceSet, hostname string) (string, sandbox.Namespaces) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ns")
	t.Cleanup(func() {
		if err := sandbox.RemoveNamespaces(dir); err != nil {
			t.Errorf("cleanup: RemoveNamespaces: %v", err)
		}
	})
	ns, err := sandbox.CreateNamespaces(context.Background(), dir, kinds, hostname)
	if err != nil {
		t.Fatalf("CreateNamespaces: %v", err)
	}
	return dir, ns
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func utsname(u *unix.Utsname) string {
	return string(bytes.TrimRight(u.Nodename[:], "\x00"))
}

func TestCreateNamespaces(t *testing.T) {
	needRoot(t)
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	dir, ns := newPod(t, sandbox.NetNS|sandbox.IPCNS|sandbox.UTSNS, "skiff-test-pod")
	if ns.PID != "" {
		t.Errorf("PID = %q, want host", ns.PID)
	}
	for kind, path := range map[string]string{"net": ns.Net, "ipc": ns.IPC, "uts": ns.UTS} {
		if path != filepath.Join(dir, kind) {
			t.Fatalf("%s path = %q", kind, path)
		}
		if got, hostIno := inode(t, path), inode(t, "/proc/self/ns/"+kind); got == hostIno {
			t.Errorf("%s: pinned namespace inode %d equals the host's", kind, got)
		}
	}

	var inPod unix.Utsname
	if err := ns.Do(func() error { return unix.Uname(&inPod) }); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got := utsname(&inPod); got != "skiff-test-pod" {
		t.Errorf("hostname in pod = %q", got)
	}
	var after unix.Utsname
	if err := unix.Uname(&after); err != nil {
		t.Fatal(err)
	}
	if utsname(&after) != utsname(&host) {
		t.Errorf("host hostname changed from %q to %q", utsname(&host), utsname(&after))
	}

	// A second create on the same pins is refused and leaves them intact.
	if _, err := sandbox.CreateNamespaces(context.Background(), dir, sandbox.NetNS, ""); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second CreateNamespaces = %v, want already exists", err)
	}
	if inode(t, ns.Net) == inode(t, "/proc/self/ns/net") {
		t.Error("net pin lost after refused second create")
	}

	if err := sandbox.RemoveNamespaces(dir); err != nil {
		t.Fatalf("RemoveNamespaces: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ns dir still there: %v", err)
	}
	if err := sandbox.RemoveNamespaces(dir); err != nil {
		t.Errorf("second RemoveNamespaces: %v", err)
	}
}

// TestNoThreadLeftInPodNamespace checks that the locked threads used to
// create and enter pod namespaces are discarded, not returned to the
// scheduler: afterwards every thread of the process is in the host's
// namespaces.
func TestNoThreadLeftInPodNamespace(t *testing.T) {
	needRoot(t)
	hostNet, hostUTS := inode(t, "/proc/self/ns/net"), inode(t, "/proc/self/ns/uts")
	for i := range 20 {
		_, ns := newPod(t, sandbox.NetNS|sandbox.UTSNS, fmt.Sprintf("skiff-test-%d", i))
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// A discarded thread exits just after its goroutine has handed back
	// the result, so it may still be listed for a moment; one returned to
	// the scheduler would stay in the pod's namespaces for good.
	var stray []string
	for deadline := time.Now().Add(2 * time.Second); ; {
		stray = strayThreads(hostNet, hostUTS)
		if len(stray) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range stray {
		t.Error(s)
	}
}

// strayThreads lists the threads of this process that are not in the
// host's net and uts namespaces.
func strayThreads(hostNet, hostUTS uint64) []string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, task := range tasks {
		base := "/proc/self/task/" + task.Name() + "/ns/"
		var st unix.Stat_t
		if unix.Stat(base+"net", &st) != nil {
			continue // thread exited meanwhile
		}
		if st.Ino != hostNet {
			out = append(out, fmt.Sprintf("thread %s is in net namespace %d, host is %d", task.Name(), st.Ino, hostNet))
		}
		if unix.Stat(base+"uts", &st) == nil && st.Ino != hostUTS {
			out = append(out, fmt.Sprintf("thread %s is in uts namespace %d, host is %d", task.Name(), st.Ino, hostUTS))
		}
	}
	return out
}

// TestPIDNamespace pins the PID namespace of a pod init started with
// CLONE_NEWPID and checks that a process joining by the pin lands in it.
func TestPIDNamespace(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	if _, err := sandbox.CreateNamespaces(context.Background(), dir, sandbox.PIDNS, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("CreateNamespaces(PIDNS) = %v, want invalid argument", err)
	}
	t.Cleanup(func() {
		if err := sandbox.RemoveNamespaces(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	initCmd := exec.Command("/usr/bin/busybox", "sleep", "60")
	initCmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := initCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { initCmd.Process.Kill(); initCmd.Wait() })

	pin, err := sandbox.PinPIDNamespace(dir, initCmd.Process.Pid)
	if err != nil {
		t.Fatalf("PinPIDNamespace: %v", err)
	}
	if pin != filepath.Join(dir, "pid") {
		t.Fatalf("pin = %q", pin)
	}
	if inode(t, pin) == inode(t, "/proc/self/ns/pid") || inode(t, pin) != inode(t, fmt.Sprintf("/proc/%d/ns/pid", initCmd.Process.Pid)) {
		t.Fatal("pin is not the init's pid namespace")
	}
	out, err := exec.Command("nsenter", "--pid="+pin, "/usr/bin/busybox", "sh", "-c", "echo $$").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got == "1" || got == "" {
		t.Errorf("joined process has pid %q in the pod namespace, want > 1 (init is 1)", got)
	}
	if err := sandbox.RemoveNamespaces(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin left: %v", err)
	}
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	return strings.TrimSpace(string(b)), err
}

func TestApplySysctls(t *testing.T) {
	needRoot(t)
	_, ns := newPod(t, sandbox.NetNS|sandbox.IPCNS|sandbox.UTSNS, "skiff-test-sysctl")
	names := []string{"net.ipv4.ip_forward", "kernel.shm_rmid_forced", "net.ipv4.ip_unprivileged_port_start", "kernel.domainname"}
	hostBefore := map[string]string{}
	for _, n := range names {
		v, err := readSysctl(n)
		if err != nil {
			t.Fatal(err)
		}
		hostBefore[n] = v
	}
	want := map[string]string{
		"net.ipv4.ip_forward":                 flip(hostBefore["net.ipv4.ip_forward"]),
		"kernel.shm_rmid_forced":              flip(hostBefore["kernel.shm_rmid_forced"]),
		"net/ipv4/ip_unprivileged_port_start": "80",
		"kernel.domainname":                   "skiff-test.example",
	}
	if err := sandbox.ApplySysctls(ns, want); err != nil {
		t.Fatalf("ApplySysctls: %v", err)
	}
	got := map[string]string{}
	if err := ns.Do(func() error {
		for _, n := range names {
			v, err := readSysctl(n)
			if err != nil {
				return err
			}
			got[n] = v
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for n, w := range want {
		n = sysctl.Normalize(n)
		if got[n] != w {
			t.Errorf("in pod %s = %q, want %q", n, got[n], w)
		}
	}
	for _, n := range names {
		v, err := readSysctl(n)
		if err != nil {
			t.Fatal(err)
		}
		if v != hostBefore[n] {
			t.Errorf("host %s changed from %q to %q", n, hostBefore[n], v)
		}
	}

	// Unknown sysctl and a host-network pod are refused.
	if err := sandbox.ApplySysctls(ns, map[string]string{"net.ipv4.skiff_nonexistent": "1"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown sysctl: %v, want invalid argument", err)
	}
	hostNet := ns
	hostNet.Net = ""
	if err := sandbox.ApplySysctls(hostNet, map[string]string{"net.ipv4.ip_forward": "1"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("net sysctl on host network: %v, want invalid argument", err)
	}
}

func flip(v string) string {
	if v == "0" {
		return "1"
	}
	return "0"
}

// TestDoSocketStaysInNamespace checks that a listener created inside the pod
// network namespace is reachable only from there, and usable from any
// goroutine, which is what a port-forward relies on.
func TestDoSocketStaysInNamespace(t *testing.T) {
	needRoot(t)
	_, ns := newPod(t, sandbox.NetNS, "")
	if out, err := exec.Command("nsenter", "--net="+ns.Net, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var got []byte
	if err := ns.Do(func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		got = make([]byte, 2)
		_, err = c.Read(got)
		return err
	}); err != nil {
		t.Fatalf("dial inside pod: %v", err)
	}
	if string(got) != "hi" {
		t.Fatalf("read %q", got)
	}
	// From the host the port is free, unless the host happens to use it.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Logf("note: %s also answers on the host", addr)
	}
}

func TestMountShm(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "shm")
	t.Cleanup(func() {
		if err := sandbox.UnmountShm(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := sandbox.MountShm(context.Background(), path, 0, 0, 0); err != nil {
		t.Fatalf("MountShm: %v", err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil || len(mounts) != 1 {
		t.Fatalf("mountinfo: %v %v", mounts, err)
	}
	m := mounts[0]
	if m.FSType != "tmpfs" {
		t.Errorf("fstype %q", m.FSType)
	}
	for _, opt := range []string{"nosuid", "nodev", "noexec"} {
		if !strings.Contains(","+m.Options+",", ","+opt+",") {
			t.Errorf("mount options %q lack %s", m.Options, opt)
		}
	}
	if !strings.Contains(m.VFSOptions, "size=65536k") {
		t.Errorf("super options %q, want size=65536k", m.VFSOptions)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("shm root mode = %v, %v; want 1777", st.Mode(), err)
	}
	if err := sandbox.MountShm(context.Background(), path, 0, 0, 0); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second MountShm = %v, want already exists", err)
	}
	if err := sandbox.UnmountShm(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("shm dir left: %v", err)
	}
	if err := sandbox.UnmountShm(path); err != nil {
		t.Errorf("second UnmountShm: %v", err)
	}

	// A custom size.
	if err := sandbox.MountShm(context.Background(), path, 8<<20, 0, 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size != 8<<20 {
		t.Errorf("size = %d, want %d", size, 8<<20)
	}
}

// TestLoopbackUp checks that a new pod network namespace has "lo" up without
// any CNI plugin: a TCP connection to 127.0.0.1 inside the pod succeeds.
func TestLoopbackUp(t *testing.T) {
	needRoot(t)
	_, ns := newPod(t, sandbox.NetNS, "")
	var flags net.Flags
	err := ns.Do(func() error {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		flags = lo.Flags
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen on 127.0.0.1 in the pod: %w", err)
		}
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				_, _ = c.Write([]byte("hi"))
				c.Close()
			}
		}()
		c, err := net.DialTimeout("tcp", l.Addr().String(), 2*time.Second)
		if err != nil {
			return fmt.Errorf("dial %s in the pod: %w", l.Addr(), err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
			return fmt.Errorf("read from %s in the pod: %q, %v", l.Addr(), b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if flags&net.FlagUp == 0 {
		t.Errorf("lo flags in the pod = %v, want up", flags)
	}
}
