package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/sandbox"
)

// buildShim builds skiff-shim, the namespace holder.
func buildShim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "skiff-shim")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/skiffcri/skiff/cmd/skiff-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build skiff-shim: %v\n%s", err, out)
	}
	return bin
}

// The kubelet's first range.
var podUserNS = sandbox.UserNS{
	UIDs: []sandbox.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	GIDs: []sandbox.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
}

// TestPodUserNamespace creates a pod with its own user namespace through
// its holder process and checks that the pod's net, ipc and uts namespaces
// are owned by it, with the mappings asked for, that the pod's root can use
// them (the point of a pod user namespace), that the set-up done from the
// host (loopback, hostname, sysctls, /dev/shm) happened, and that neither a
// holder process nor, after RemovePod, a mount is left.
func TestPodUserNamespace(t *testing.T) {
	needRoot(t)
	shim := buildShim(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		if err := sandbox.RemovePod(context.Background(), dir); err != nil {
			t.Errorf("cleanup: RemovePod: %v", err)
		}
	})
	pod, err := sandbox.CreatePod(context.Background(), dir, sandbox.PodConfig{
		Hostname: "skiff-userns-pod",
		Sysctls:  map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"},
		UserNS:   &podUserNS,
		NSHolder: shim,
	})
	if err != nil {
		t.Fatalf("CreatePod: %v", err)
	}
	ns := pod.Namespaces
	if ns.User != filepath.Join(dir, "ns", "user") || ns.Net == "" || ns.IPC == "" || ns.UTS == "" || ns.PID != "" {
		t.Fatalf("namespaces = %+v", ns)
	}
	if noHolderLeft(t, shim); t.Failed() {
		return
	}

	user := nsID(t, ns.User)
	if user == nsID(t, "/proc/self/ns/user") {
		t.Fatal("the pinned user namespace is the host's")
	}
	for kind, path := range map[string]string{"net": ns.Net, "ipc": ns.IPC, "uts": ns.UTS} {
		if nsID(t, path) == nsID(t, "/proc/self/ns/"+kind) {
			t.Errorf("%s: the pinned namespace is the host's", kind)
		}
		if owner := nsRelative(t, path, unix.NS_GET_USERNS); owner != user {
			t.Errorf("%s namespace owned by user namespace %v, want the pod's %v", kind, owner, user)
		}
	}
	if parent := nsRelative(t, ns.User, unix.NS_GET_PARENT); parent != nsID(t, "/proc/self/ns/user") {
		t.Errorf("the pod's user namespace has parent %v, want the host's", parent)
	}
	for _, f := range []string{"uid_map", "gid_map"} {
		got := strings.Fields(nsenter(t, []string{"--user=" + ns.User}, "cat", "/proc/self/"+f))
		if want := []string{"0", "100000", "65536"}; !slices.Equal(got, want) {
			t.Errorf("%s in the pod's user namespace = %q, want %q", f, got, want)
		}
	}

	// The pod's root has CAP_NET_ADMIN over its network namespace and may
	// mount a sysfs there, which a user namespace that does not own the
	// network namespace forbids.
	nsenter(t, []string{"--user=" + ns.User, "--net=" + ns.Net}, "ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
	nsenter(t, []string{"--user=" + ns.User, "--net=" + ns.Net}, "unshare", "--mount", "mount", "-t", "sysfs", "sysfs", "/sys")

	var (
		lo         net.Flags
		uts        unix.Utsname
		portsStart string
	)
	if err := ns.Do(func() error {
		l, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		lo = l.Flags
		if err := unix.Uname(&uts); err != nil {
			return err
		}
		portsStart, err = readSysctl("net.ipv4.ip_unprivileged_port_start")
		return err
	}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if lo&net.FlagUp == 0 {
		t.Errorf("lo flags in the pod = %v, want up", lo)
	}
	if got := utsname(&uts); got != "skiff-userns-pod" {
		t.Errorf("hostname in the pod = %q", got)
	}
	if portsStart != "80" {
		t.Errorf("net.ipv4.ip_unprivileged_port_start in the pod = %q, want 80", portsStart)
	}

	var st unix.Stat_t
	if err := unix.Stat(pod.Files.Shm, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 100000 || st.Gid != 100000 || st.Mode&0o7777 != 0o1777 {
		t.Errorf("pod shm owned by %d:%d mode %o, want 100000:100000 mode 1777 (the pod's root)", st.Uid, st.Gid, st.Mode&0o7777)
	}

	if err := sandbox.RemovePod(context.Background(), dir); err != nil {
		t.Fatalf("RemovePod: %v", err)
	}
	noMountsUnder(t, dir)
	for _, p := range []string{filepath.Join(dir, "ns"), pod.Files.Shm} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after RemovePod: %v", p, err)
		}
	}
}

// TestPodUserNamespaceFailures checks that a pod user namespace that cannot
// be made leaves no pin, mount or process behind, whichever step fails.
func TestPodUserNamespaceFailures(t *testing.T) {
	needRoot(t)
	shim := buildShim(t)
	rootMapped := sandbox.UserNS{UIDs: []sandbox.IDMap{{ContainerID: 0, HostID: 0, Size: 65536}}, GIDs: podUserNS.GIDs}
	for _, tc := range []struct {
		name    string
		userns  sandbox.UserNS
		holder  string
		kind    error  // if set, the error's kind
		message string // if set, part of the error's text
	}{
		{name: "host root mapped", userns: rootMapped, holder: shim, kind: errdefs.ErrInvalidArgument},
		{name: "no holder", userns: podUserNS, kind: errdefs.ErrFailedPrecondition},
		{name: "holder missing", userns: podUserNS, holder: "/nonexistent/skiff-shim", message: "no such file"},
		// Gone before or after the pins, it fails the create either way.
		{name: "holder exits at once", userns: podUserNS, holder: "/bin/false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := sandbox.CreatePod(context.Background(), dir, sandbox.PodConfig{Hostname: "skiff-userns-fail", UserNS: &tc.userns, NSHolder: tc.holder})
			if err == nil {
				sandbox.RemovePod(context.Background(), dir)
				t.Fatal("CreatePod succeeded")
			}
			t.Log(err)
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("err = %v, want %v", err, tc.kind)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %v, want it to say %q", err, tc.message)
			}
			noMountsUnder(t, dir)
			for _, p := range []string{"ns", "shm"} {
				if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left: %v", p, err)
				}
			}
			noChildLeft(t)
		})
	}
}

// nsIdent identifies a namespace.
type nsIdent struct{ dev, ino uint64 }

// nsID identifies the namespace of a namespace file.
func nsID(t *testing.T, path string) nsIdent {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return nsIdent{st.Dev, st.Ino}
}

// nsRelative returns the namespace that ioctl req (NS_GET_USERNS,
// NS_GET_PARENT) finds from the namespace file path.
func nsRelative(t *testing.T, path string, req uint) nsIdent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), req)
	if err != nil {
		t.Fatalf("ioctl %#x on %s: %v", req, path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return nsIdent{st.Dev, st.Ino}
}

// nsenter runs a command in the namespaces that nsenter's flags name, as
// nsenter's root there, and returns its output.
func nsenter(t *testing.T, flags []string, cmd ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	c := exec.Command("nsenter", append(flags, cmd...)...)
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Errorf("nsenter %v %v: %v: %s", flags, cmd, err, stderr.Bytes())
	}
	return string(out)
}

// noHolderLeft fails t if a process runs the holder mode of shim.
func noHolderLeft(t *testing.T, shim string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.HasPrefix(b, []byte(shim+"\x00nshold")) {
			t.Errorf("holder left: %s", filepath.Dir(p))
		}
	}
}

// noChildLeft fails t if this process has a child process, running or not
// reaped.
func noChildLeft(t *testing.T) {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			t.Errorf("child processes left: %s", b)
		}
	}
}

// noMountsUnder fails t if anything is mounted at or below dir.
func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("mount left: %s (%s)", m.Mountpoint, m.FSType)
	}
}
