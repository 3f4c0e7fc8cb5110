package seccomp

// Kernel tests: the filter is installed in a re-executed copy of the test
// binary (a filter can never be removed, so the test process itself must
// stay clean). They need no root: no_new_privs allows unprivileged filters.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const helperEnv = "SKIFF_SECCOMP_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "deny-mkdir":
		helperDenyMkdir()
	case "default-exec":
		helperDefaultExec()
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode")
	os.Exit(2)
}

// threadStatus returns a field of /proc/thread-self/status: the filter is
// per thread, so the process-wide view could show another thread.
func threadStatus(field string) string {
	f, err := os.Open("/proc/thread-self/status")
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "missing"
}

func helperDenyMkdir() {
	runtime.LockOSThread()
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: nativeArches(),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdirat", "mkdir"}, Action: specs.ActErrno},
			{Names: []string{"fchmodat", "chmod"}, Action: specs.ActErrno, ErrnoRet: func() *uint { v := uint(unix.EXDEV); return &v }()},
		},
	}
	f, err := Prepare(s)
	if err != nil {
		fmt.Println("prepare:", err)
		os.Exit(1)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		os.Exit(1)
	}
	if err := f.Install(); err != nil {
		fmt.Println("install:", err)
		os.Exit(1)
	}
	dir := os.Args[len(os.Args)-1]
	mkErr := unix.Mkdirat(unix.AT_FDCWD, filepath.Join(dir, "denied"), 0o755)
	chErr := unix.Fchmodat(unix.AT_FDCWD, dir, 0o700, 0)
	openErr := error(nil)
	if fd, err := unix.Open(filepath.Join(dir, "allowed"), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644); err != nil {
		openErr = err
	} else {
		unix.Close(fd)
	}
	fmt.Printf("mkdirat=%v chmod=%v open=%v seccomp=%s nnp=%s\n", errName(mkErr), errName(chErr), errName(openErr),
		threadStatus("Seccomp"), threadStatus("NoNewPrivs"))
	os.Exit(0)
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(syscall.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// helperDefaultExec installs RuntimeDefault and execs a busybox shell that
// reports what it may do, proving the kernel accepts the full program and
// ordinary programs run under it.
func helperDefaultExec() {
	runtime.LockOSThread()
	f, err := Prepare(RuntimeDefault())
	if err != nil {
		fmt.Println("prepare:", err)
		os.Exit(1)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		os.Exit(1)
	}
	if err := f.Install(); err != nil {
		fmt.Println("install:", err)
		os.Exit(1)
	}
	script := `grep Seccomp: /proc/self/status; ` +
		`/usr/bin/busybox unshare -U true 2>/dev/null; echo unshare=$?; ` +
		`/usr/bin/busybox mkdir ` + os.Args[len(os.Args)-1] + `/d && echo mkdir=ok`
	err = unix.Exec("/usr/bin/busybox", []string{"sh", "-c", script}, os.Environ())
	fmt.Println("exec:", err)
	os.Exit(1)
}

func runHelper(t *testing.T, mode string) string {
	t.Helper()
	if _, err := os.Stat("/proc/thread-self/status"); err != nil {
		t.Skip("no /proc/thread-self")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$", dir)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, out)
	}
	return string(out)
}

func TestKernelDenyMkdir(t *testing.T) {
	out := runHelper(t, "deny-mkdir")
	want := "mkdirat=EPERM chmod=EXDEV open=ok seccomp=2 nnp=1"
	if strings.TrimSpace(out) != want {
		t.Errorf("helper reported %q, want %q", strings.TrimSpace(out), want)
	}
}

func TestKernelRuntimeDefaultExec(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("RuntimeDefault is built for amd64 and arm64")
	}
	if _, err := os.Stat("/usr/bin/busybox"); err != nil {
		t.Skip("needs busybox")
	}
	out := runHelper(t, "default-exec")
	for _, want := range []string{"Seccomp:\t2", "unshare=1", "mkdir=ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
