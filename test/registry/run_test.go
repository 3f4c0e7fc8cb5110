package registry

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// These tests run the images' programs in a chroot of the unpacked image
// (root only): the stand-in scripts must behave as critest expects.

// testOptions builds from $SKIFF_TEST_BUSYBOX if set (e.g. Debian's dynamic
// "busybox" package unpacked somewhere), else from busybox-static.
func testOptions() Options { return Options{Busybox: os.Getenv("SKIFF_TEST_BUSYBOX")} }

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	needBusybox(t)
}

// unpack writes img's flattened filesystem under a new temporary directory.
// Only our own trusted images go through here.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// A container runtime always provides /dev/null (ash needs it
			// for background jobs).
			if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(root, "dev/null"), 0o666); err != nil { // past the umask
				t.Fatal(err)
			}
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
			continue
		case tar.TypeLink:
			// Then chown/chmod the shared inode from the link's header, as
			// containerd does.
			if err := os.Link(filepath.Join(root, filepath.Clean("/"+h.Linkname)), p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected entry %s type %c", h.Name, h.Typeflag)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
		// After chown, which clears setuid bits.
		mode := os.FileMode(h.Mode & 0o777)
		if h.Mode&0o4000 != 0 {
			mode |= os.ModeSetuid
		}
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// chroot runs argv in root as uid:gid and returns stdout.
func chroot(t *testing.T, root string, uid, gid uint32, argv ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Env:    []string{defaultPath},
		Dir:    "/",
		Stdout: &out,
		Stderr: &errb,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     root,
			Credential: &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: uid == 0},
		},
	}
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%v: %w (stderr %q)", argv, err, errb.String())
	}
	return out.String(), err
}

// imageNamed returns the image served as n, resolving an index to the
// entry for this machine's architecture.
func imageNamed(t *testing.T, set []Image, n string) v1.Image {
	t.Helper()
	for _, im := range set {
		for _, name := range im.Names {
			if name != n {
				continue
			}
			if im.Image != nil {
				return im.Image
			}
			m, err := im.Index.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range m.Manifests {
				if d.Platform != nil && d.Platform.Architecture == runtime.GOARCH {
					img, err := im.Index.Image(d.Digest)
					if err != nil {
						t.Fatal(err)
					}
					return img
				}
			}
		}
	}
	t.Fatalf("no image %s for %s", n, runtime.GOARCH)
	return nil
}

func TestNoNewPrivsImage(t *testing.T) {
	needRoot(t)
	set, err := Images(t.Context(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	root := unpack(t, imageNamed(t, set, "registry.k8s.io/e2e-test-images/nonewprivs:1.3"))
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/local/bin/nnp"}, "Effective uid: 0\n"},
		{[]string{"/bin/setpriv", "--nnp", "/usr/local/bin/nnp"}, "Effective uid: 1000\n"},
	} {
		got, err := chroot(t, root, 1000, 1000, tc.argv...)
		if err != nil || got != tc.want {
			t.Errorf("%v: %q, %v; want %q", tc.argv, got, err, tc.want)
		}
	}
}

func TestImageAccounts(t *testing.T) {
	needRoot(t)
	set, err := Images(t.Context(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		image    string
		uid, gid uint32
		argv     []string
		want     string
	}{
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", 33, 33, []string{"/bin/id", "-nu"}, "www-data\n"},
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", 0, 0, []string{"/bin/sh", "-c", "echo $(id -u):$(id -g)"}, "0:0\n"},
		{"gcr.io/k8s-staging-cri-tools/test-image-tag-" + runtime.GOARCH + ":test", 0, 0, []string{"/bin/ls", "/test"}, "/test\n"},
	} {
		root := unpack(t, imageNamed(t, set, tc.image))
		got, err := chroot(t, root, tc.uid, tc.gid, tc.argv...)
		if err != nil || got != tc.want {
			t.Errorf("%s %v: %q, %v; want %q", tc.image, tc.argv, got, err, tc.want)
		}
	}
}

// TestPgrepIpcs runs the stand-in scripts on the host's /proc.
func TestPgrepIpcs(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	for n, s := range map[string]string{"pgrep": pgrepScript, "ipcs": ipcsScript} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Named like the container's /bin/sleep link, so the kernel calls it "sleep".
	if err := os.Symlink(DefaultBusybox, filepath.Join(dir, "sleep")); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command(filepath.Join(dir, "sleep"), "300")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	out, err := exec.Command(DefaultBusybox, "sh", filepath.Join(dir, "pgrep"), "^sleep$").Output()
	if err != nil || !strings.Contains(out2lines(out), "|"+strconv.Itoa(sleep.Process.Pid)+"|") {
		t.Errorf("pgrep sleep = %q, %v; want pid %d", out, err, sleep.Process.Pid)
	}
	if out, err := exec.Command(DefaultBusybox, "sh", filepath.Join(dir, "pgrep"), "^no-such-process$").Output(); err == nil || len(out) != 0 {
		t.Errorf("pgrep of nothing = %q, %v; want no output, status 1", out, err)
	}

	id, _, errno := syscall.Syscall(syscall.SYS_SHMGET, 0 /* IPC_PRIVATE */, 4096, 0o600|0o1000 /* IPC_CREAT */)
	if errno != 0 {
		t.Fatalf("shmget: %v", errno)
	}
	t.Cleanup(func() { syscall.Syscall(syscall.SYS_SHMCTL, id, 0 /* IPC_RMID */, 0) })
	out, err2 := exec.Command(DefaultBusybox, "sh", filepath.Join(dir, "ipcs"), "-m").Output()
	if err2 != nil || !strings.Contains(string(out), "Shared Memory Segments") ||
		!strings.Contains(string(out), " "+strconv.Itoa(int(id))+" ") {
		t.Errorf("ipcs -m = %q, %v; want segment %d", out, err2, id)
	}
}

func out2lines(b []byte) string { return "|" + strings.Join(strings.Fields(string(b)), "|") + "|" }

// TestNginxImage starts the nginx stand-in in a chroot on a free port and
// checks the page, the pid file, the process name and a clean SIGTERM exit.
func TestNginxImage(t *testing.T) {
	needRoot(t)
	set, err := Images(t.Context(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	root := unpack(t, imageNamed(t, set, "registry.k8s.io/e2e-test-images/nginx:1.14-2"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := os.WriteFile(filepath.Join(root, "etc/nginx/port"), []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := &exec.Cmd{
		Path: "/usr/sbin/nginx", Args: []string{"nginx", "-g", "daemon off;"},
		Env: []string{defaultPath}, Dir: "/", Stdout: &logs, Stderr: &logs,
		SysProcAttr: &syscall.SysProcAttr{Chroot: root},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var resp *http.Response
	for range 100 {
		if resp, err = http.Get(url); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET %s: %v (logs %q)", url, err, logs.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "nginx") {
		t.Errorf("GET %s: %d %q", url, resp.StatusCode, body)
	}
	pid, err := os.ReadFile(filepath.Join(root, "var/run/nginx.pid"))
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("nginx.pid = %q, %v; want %d", pid, err, cmd.Process.Pid)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
	if strings.TrimSpace(string(comm)) != "nginx" || !bytes.Contains(cmdline, []byte("master process")) {
		t.Errorf("process comm %q cmdline %q; want nginx, master process", comm, cmdline)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("nginx exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("nginx ignored SIGTERM")
	}
}

// TestHttpdAndPauseImages runs the httpd and pause stand-ins as their images'
// default commands, in a chroot and a fresh network namespace (port 80 there
// is free and disappears with the processes).
func TestHttpdAndPauseImages(t *testing.T) {
	needRoot(t)
	set, err := Images(t.Context(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	httpd := unpack(t, imageNamed(t, set, "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"))
	script := `ip link set lo up
/usr/local/bin/httpd-foreground > /tmp/httpd.log 2>&1 &
pid=$!
i=0
until page=$(wget -q -O - http://127.0.0.1:80/); do
	i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1
done
kill -TERM $pid; wait $pid; status=$?
echo "$page"; cat /tmp/httpd.log; echo "status=$status"`
	var out, errb bytes.Buffer
	cmd := &exec.Cmd{
		Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{defaultPath}, Dir: "/",
		Stdout: &out, Stderr: &errb,
		SysProcAttr: &syscall.SysProcAttr{Chroot: httpd, Cloneflags: syscall.CLONE_NEWNET},
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("httpd image: %v\n%s%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"It works!", "httpd: serving", "status=0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("httpd image: output lacks %q:\n%s", want, out.String())
		}
	}

	pause := unpack(t, imageNamed(t, set, "registry.k8s.io/pause:3.10"))
	cmd = &exec.Cmd{
		Path: "/pause", Args: []string{"/pause"}, Env: []string{defaultPath}, Dir: "/",
		SysProcAttr: &syscall.SysProcAttr{Chroot: pause, Credential: &syscall.Credential{Uid: 65535, Gid: 65535}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Blocked with no child process once its FIFO is open, then a clean
	// exit on SIGTERM.
	fifoOpen := func() bool {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", cmd.Process.Pid, fd.Name())); strings.Contains(l, "pause.") {
				return true
			}
		}
		return false
	}
	for i := 0; i < 100 && !fifoOpen(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !fifoOpen() {
		t.Error("pause did not open its FIFO")
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)); len(strings.TrimSpace(string(b))) > 0 {
		t.Errorf("pause has child processes %q", b)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pause exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Error("pause ignored SIGTERM")
	}
}
