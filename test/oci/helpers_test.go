// Package oci_test holds root kernel tests for the executor: they run
// busybox containers on an overlay rootfs and check the set-up from inside.
package oci_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/oci"
)

var shimPath string

func init() {
	// Keep the main thread for the main goroutine: helpers here and in the
	// executor join namespaces on locked threads that they then discard,
	// and a discarded main thread would be wedged instead of ended.
	runtime.LockOSThread()
}

func TestMain(m *testing.M) {
	if os.Getuid() != 0 {
		os.Exit(m.Run()) // every test skips (needRoot)
	}
	dir, err := os.MkdirTemp("", "skiff-test-shim-")
	if err != nil {
		panic(err)
	}
	shimPath = filepath.Join(dir, "skiff-shim")
	// As installed: static, with the pre-runtime stage that joins user
	// namespaces.
	out, err := exec.Command("../../hack/build-shim.sh", shimPath).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build skiff-shim: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var busyboxApplets = []string{"sh", "cat", "id", "echo", "ls", "true", "hostname", "tty", "stty",
	"grep", "readlink", "sleep", "touch", "cmp", "mknod", "dd", "head", "stat", "ps", "wc", "tr"}

// newRootfs mounts an overlay over a busybox lower dir and returns the
// merged path. Unmounted and removed on cleanup.
func newRootfs(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	lower := filepath.Join(base, "lower")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root"} {
		must(t, os.MkdirAll(filepath.Join(lower, d), 0o755))
	}
	bb, err := os.ReadFile("/usr/bin/busybox")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(lower, "bin/busybox"), bb, 0o755))
	for _, a := range busyboxApplets {
		must(t, os.Symlink("busybox", filepath.Join(lower, "bin", a)))
	}
	must(t, os.WriteFile(filepath.Join(lower, "etc/passwd"),
		[]byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(lower, "etc/group"), []byte("root:x:0:\nuser:x:1000:\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(lower, "etc/secret"), []byte("top secret\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(lower, "etc/secretdir"), 0o755))
	must(t, os.WriteFile(filepath.Join(lower, "etc/secretdir/file"), []byte("x\n"), 0o644))
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	must(t, unix.Mount("overlay", merged, "overlay", 0, data))
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	return merged
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// baseSpec is close to what the CRI layer generates for a pod container.
func baseSpec(args ...string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "skiff-test-host",
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
				"/etc/secret", "/etc/secretdir"},
			ReadonlyPaths: []string{"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// needRoot skips a test on a machine where it cannot run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
}

// newExecutor skips t without root.
func newExecutor(t *testing.T) *oci.Executor {
	t.Helper()
	needRoot(t)
	return &oci.Executor{StateDir: t.TempDir(), InitPath: shimPath, NewCgroup: oci.NewCgroupfs()}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// create creates a container with stdout and stderr captured; the
// returned func waits for the output (after the process exited).
func create(t *testing.T, e *oci.Executor, id string, spec *specs.Spec, rootfs string) (*oci.Container, func() string) {
	t.Helper()
	ctx := testCtx(t)
	r, w, err := os.Pipe()
	must(t, err)
	c, err := e.Create(ctx, id, oci.Bundle{Spec: spec, Rootfs: rootfs}, oci.IO{Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		r.Close()
		t.Fatalf("create %s: %v", id, err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.Delete(dctx, id, true); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("delete %s: %v", id, err)
		}
	})
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		r.Close()
		out <- string(b)
	}()
	return c, func() string {
		select {
		case s := <-out:
			return s
		case <-time.After(30 * time.Second):
			t.Fatal("timeout reading container output")
			return ""
		}
	}
}

// run creates, starts and waits for a container and returns its output.
func run(t *testing.T, e *oci.Executor, id string, spec *specs.Spec) (string, oci.ExitStatus) {
	t.Helper()
	c, output := create(t, e, id, spec, newRootfs(t))
	must(t, e.Start(testCtx(t), id))
	st, err := c.Wait()
	must(t, err)
	return output(), st
}

// runOK is run that fails the test on a non-zero exit.
func runOK(t *testing.T, e *oci.Executor, id string, spec *specs.Spec) string {
	t.Helper()
	out, st := run(t, e, id, spec)
	if st.Code != 0 {
		t.Fatalf("container %s exited %+v, output:\n%s", id, st, out)
	}
	return out
}

func sh(script string) *specs.Spec { return baseSpec("sh", "-c", script) }

// statusField returns the value of a /proc/<pid>/status line in out.
func statusField(t *testing.T, out, key string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s line in:\n%s", key, out)
	return ""
}

// pinNamespaces creates new net, ipc and uts namespaces pinned by bind
// mounts under a temp dir, like the sandbox package does for a pod.
func pinNamespaces(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	for _, n := range []string{"net", "ipc", "uts"} {
		p := filepath.Join(dir, n)
		must(t, os.WriteFile(p, nil, 0o644))
		paths[n] = p
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked and dirty; the runtime discards it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS); err != nil {
			errc <- err
			return
		}
		for n, p := range paths {
			if err := unix.Mount("/proc/thread-self/ns/"+n, p, "", unix.MS_BIND, ""); err != nil {
				errc <- fmt.Errorf("pin %s: %w", n, err)
				return
			}
		}
		errc <- nil
	}()
	err := <-errc
	t.Cleanup(func() {
		for _, p := range paths {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	})
	must(t, err)
	return paths
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	return st.Ino
}
