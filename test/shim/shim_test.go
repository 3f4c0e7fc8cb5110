// Package shim_test holds root kernel tests for the per-pod shim: the real
// skiff-shim binary, detached, running busybox containers through the oci
// executor, outliving the client that started it.
package shim_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/oci/cgroups"
	"github.com/skiffcri/skiff/shim"
	"github.com/skiffcri/skiff/shim/crilog"
)

var shimPath string

// helperEnv switches the test binary into the role of a daemon (skiffd)
// that starts a shim and its containers and is then killed with SIGKILL.
const helperEnv = "SKIFF_TEST_SHIM_CLIENT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(clientHelper())
	}
	if os.Getuid() != 0 {
		os.Exit(m.Run()) // every test skips (needRoot)
	}
	dir, err := os.MkdirTemp("", "skiff-test-shim-bin-")
	if err != nil {
		panic(err)
	}
	shimPath = filepath.Join(dir, "skiff-shim")
	// As installed (static: no libc mapped into every shim).
	// SKIFF_TEST_SHIM_RACE=1 builds it with the race detector instead
	// (its reports land in the shim's shim.log).
	cmd := exec.Command("../../hack/build-shim.sh", shimPath)
	if os.Getenv("SKIFF_TEST_SHIM_RACE") != "" {
		cmd.Args = append(cmd.Args, "-race")
		cmd.Env = append(os.Environ(), "SHIM_CGO=1") // -race needs cgo
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build skiff-shim: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helperConfig is handed to the client helper through its environment.
type helperConfig struct {
	ShimBinary, Dir, RuntimeRoot string
	Containers                   []shim.CreateRequest
}

// clientHelper starts a shim and the containers, prints "started", then
// blocks in Wait until it is killed.
func clientHelper() int {
	var cfg helperConfig
	if err := jsonUnmarshal([]byte(os.Getenv(helperEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	c, err := shim.Start(ctx, shim.StartOptions{
		Binary: cfg.ShimBinary, Dir: cfg.Dir, PodID: "pod-a",
		Args: []string{"--runtime-root", cfg.RuntimeRoot},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start shim:", err)
		return 1
	}
	for _, req := range cfg.Containers {
		if _, err := c.CreateContainer(ctx, req); err != nil {
			fmt.Fprintln(os.Stderr, "create:", err)
			return 1
		}
		if _, err := c.StartContainer(ctx, req.ID); err != nil {
			fmt.Fprintln(os.Stderr, "start:", err)
			return 1
		}
	}
	fmt.Println("started")
	// An outstanding request at the moment of the kill, like a daemon in
	// the middle of StopContainer.
	c.Wait(ctx, cfg.Containers[0].ID)
	return 0
}

var busyboxApplets = []string{"sh", "echo", "sleep", "true", "cat", "tty", "head", "tail", "ls", "tr", "grep", "stty", "dd"}

// newRootfs mounts an overlay over a busybox lower dir and returns the
// merged path; unmounted on cleanup.
func newRootfs(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	lower := filepath.Join(base, "lower")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		must(t, os.MkdirAll(filepath.Join(lower, d), 0o755))
	}
	bb, err := os.ReadFile("/usr/bin/busybox")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(lower, "bin/busybox"), bb, 0o755))
	for _, a := range busyboxApplets {
		must(t, os.Symlink("busybox", filepath.Join(lower, "bin", a)))
	}
	must(t, os.WriteFile(filepath.Join(lower, "etc/passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(lower, "etc/group"), []byte("root:x:0:\n"), 0o644))
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	must(t, unix.Mount("overlay", merged, "overlay", 0,
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)))
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	return merged
}

var caps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"}

func containerSpec(terminal bool, args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal:        terminal,
			Args:            args,
			Env:             []string{"PATH=/bin", "TERM=xterm"},
			Cwd:             "/",
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// needRoot skips a test on a machine where it cannot run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// cleanupShim stops whatever the shim in dir still runs and ends it; if it
// does not answer, its process is killed.
func cleanupShim(t *testing.T, dir string) {
	t.Cleanup(func() {
		// Runs last (cleanups are LIFO): the shim has stopped writing.
		if b, err := os.ReadFile(filepath.Join(dir, shim.LogFileName)); err == nil && bytes.Contains(b, []byte("DATA RACE")) {
			t.Errorf("race in the shim:\n%s", b)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := shim.Connect(ctx, dir)
		if err == nil {
			sts, _ := c.ListContainers(ctx)
			for _, st := range sts {
				c.KillContainer(ctx, st.ID, syscall.SIGKILL, true)
				c.Wait(ctx, st.ID)
				if err := c.DeleteContainer(ctx, st.ID); err != nil {
					t.Errorf("cleanup: delete %s: %v", st.ID, err)
				}
			}
			if err := c.Shutdown(ctx); err == nil {
				return
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, shim.PidFileName)); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// records parses a CRI log file, failing on any malformed line.
func records(t *testing.T, path string) []crilog.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []crilog.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		r, err := crilog.ParseRecord(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r.Text = append([]byte(nil), r.Text...)
		out = append(out, r)
	}
	return out
}

func lineCount(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memory returns the shim's VmRSS, RssAnon and Pss in KiB.
func memory(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"VmRSS:", "RssAnon:", "RssFile:", "Threads:"} {
			if strings.HasPrefix(l, k) {
				parts = append(parts, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	if roll, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for _, l := range strings.Split(string(roll), "\n") {
			if strings.HasPrefix(l, "Pss:") {
				parts = append(parts, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// statusKiB reads one "Key: N kB" line of /proc/pid/status.
func statusKiB(t *testing.T, pid int, key string) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == key {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("/proc/%d/status: %q: %v", pid, l, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

// podInitAnonBudgetKiB is the anonymous memory a pod init may hold.
const podInitAnonBudgetKiB = 256

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// TestShimOutlivesClient is the restart story: a client starts the shim
// and two containers and is SIGKILLed mid-request; the containers keep
// running and logging, one exits while nobody is connected, and a new
// client reconnects, reads the exit, execs, rotates the log and stops
// everything, with every log line present exactly once and in order.
func TestShimOutlivesClient(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "shim")
	rtRoot := filepath.Join(t.TempDir(), "runtime")
	logDir := t.TempDir()
	logPath := filepath.Join(logDir, "logger.log")
	loggerRoot, quitterRoot := newRootfs(t), newRootfs(t)
	cleanupShim(t, dir)

	cfg := helperConfig{
		ShimBinary: shimPath, Dir: dir, RuntimeRoot: rtRoot,
		Containers: []shim.CreateRequest{
			{
				ID:      "logger",
				Spec:    containerSpec(false, "sh", "-c", `i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done`),
				Rootfs:  loggerRoot,
				LogPath: logPath,
			},
			{
				ID:      "quitter",
				Spec:    containerSpec(false, "sh", "-c", `while [ ! -e /trigger ]; do sleep 0.02; done; echo bye; exit 42`),
				Rootfs:  quitterRoot,
				LogPath: filepath.Join(logDir, "quitter.log"),
			},
		},
	}
	env, err := jsonMarshal(cfg)
	must(t, err)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+string(env))
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	must(t, err)
	must(t, helper.Start())
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "started" {
		helper.Wait()
		t.Fatalf("client helper did not start the containers (said %q)", line)
	}
	waitFor(t, "first log lines", func() bool { return lineCount(logPath) >= 20 })

	// kill -9 of the "daemon" while it waits on the shim.
	must(t, helper.Process.Signal(syscall.SIGKILL))
	helper.Wait()
	b, err := os.ReadFile(filepath.Join(dir, shim.PidFileName))
	must(t, err)
	shimPid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(t, err)
	if ppid := parentOf(t, shimPid); ppid == helper.Process.Pid || ppid == os.Getpid() {
		t.Errorf("shim's parent is %d: not re-parented away from its starter", ppid)
	}

	// With no client: the logger keeps logging, the quitter exits.
	n := lineCount(logPath)
	waitFor(t, "log growth with no client", func() bool { return lineCount(logPath) >= n+150 })
	must(t, os.WriteFile(filepath.Join(quitterRoot, "trigger"), nil, 0o644))
	quitterDir := shim.ContainerStateDir(dir, "quitter")
	waitFor(t, "quitter's exit record", func() bool {
		_, err := shim.ReadExitFile(quitterDir)
		return err == nil
	})
	if !alive(shimPid) {
		t.Fatal("shim died with its client")
	}

	// Reconnect as a restarted daemon would.
	c, err := shim.Connect(ctx, dir)
	must(t, err)
	if c.Pid() != shimPid || c.Info().PodID != "pod-a" {
		t.Errorf("reconnected to %+v, want pid %d of pod-a", c.Info(), shimPid)
	}
	sts, err := c.ListContainers(ctx)
	must(t, err)
	got := map[string]shim.ContainerState{}
	for _, st := range sts {
		got[st.ID] = st
	}
	if st := got["logger"]; st.Status != shim.StatusRunning || st.StartedAt.IsZero() {
		t.Errorf("logger after reconnect: %+v", st)
	}
	if st := got["quitter"]; st.Status != shim.StatusExited || st.ExitCode != 42 || st.Reason != shim.ReasonError {
		t.Errorf("quitter after reconnect: %+v", st)
	}
	rec, err := shim.ReadExitFile(quitterDir)
	must(t, err)
	if rec.ExitCode != 42 || rec.Signal != 0 || rec.FinishedAt.IsZero() || rec.ID != "quitter" {
		t.Errorf("quitter exit record %+v", rec)
	}
	if qr := records(t, filepath.Join(logDir, "quitter.log")); len(qr) != 1 || string(qr[0].Text) != "bye" {
		t.Errorf("quitter log %+v", qr)
	}
	t.Logf("shim memory with a running logger: %s", memory(t, shimPid))

	// ExecSync through the executor.
	for _, tc := range []struct {
		name           string
		cmd            []string
		timeout        time.Duration
		stdout, stderr string
		code           int
		err            error
	}{
		{name: "output and code", cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, stdout: "out\n", stderr: "err\n", code: 3},
		{name: "sees the container", cmd: []string{"sh", "-c", "cat /proc/1/cmdline | head -c 2"}, stdout: "sh"},
		{name: "timeout", cmd: []string{"sleep", "30"}, timeout: 300 * time.Millisecond, err: context.DeadlineExceeded},
	} {
		t.Run("exec/"+tc.name, func(t *testing.T) {
			res, err := c.ExecSync(ctx, shim.ExecSyncRequest{ID: "logger", Cmd: tc.cmd, Timeout: tc.timeout})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			must(t, err)
			if string(res.Stdout) != tc.stdout || string(res.Stderr) != tc.stderr || res.ExitCode != tc.code {
				t.Errorf("got %q %q %d, want %q %q %d", res.Stdout, res.Stderr, res.ExitCode, tc.stdout, tc.stderr, tc.code)
			}
		})
	}
	if _, err := c.ExecSync(ctx, shim.ExecSyncRequest{ID: "quitter", Cmd: []string{"true"}}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("exec in exited container: %v", err)
	}

	// Attach sees the live output.
	var attached bytes.Buffer
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- c.Attach(actx, "logger", shim.StreamIO{Stdout: lockedWriter(&attached)}) }()
	waitFor(t, "attached output", func() bool { return strings.Count(readLocked(&attached), "\n") >= 5 })
	acancel()
	<-adone
	if a := readLocked(&attached); !strings.HasPrefix(a, "line ") {
		t.Errorf("attach output %q", a[:min(len(a), 80)])
	}

	// Rotation: rename, reopen, keep going.
	rotated := logPath + ".1"
	must(t, os.Rename(logPath, rotated))
	must(t, c.ReopenLog(ctx, "logger"))
	waitFor(t, "lines in the reopened log", func() bool { return lineCount(logPath) >= 20 })

	if err := c.Shutdown(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("shutdown with a running container: %v", err)
	}
	must(t, c.KillContainer(ctx, "logger", syscall.SIGKILL, true))
	st, err := c.Wait(ctx, "logger")
	must(t, err)
	if st.ExitCode != 137 || st.Signal != int(syscall.SIGKILL) {
		t.Errorf("logger after SIGKILL: %+v", st)
	}

	// Every line exactly once, in order, across the rotation.
	next, partial := 0, 0
	for _, f := range []string{rotated, logPath} {
		recs := records(t, f)
		if len(recs) == 0 {
			t.Errorf("%s is empty", f)
		}
		for i, r := range recs {
			if r.Stream != crilog.Stdout {
				t.Fatalf("%s record %d on %s: %q", f, i, r.Stream, r.Text)
			}
			if r.Tag == crilog.TagPartial {
				// Only the very last record may be a line cut by SIGKILL.
				if f != logPath || i != len(recs)-1 {
					t.Fatalf("%s record %d is partial: %q", f, i, r.Text)
				}
				partial++
				continue
			}
			if want := "line " + strconv.Itoa(next); string(r.Text) != want {
				t.Fatalf("%s record %d is %q, want %q", f, i, r.Text, want)
			}
			next++
		}
	}
	t.Logf("%d log lines in order across the kill of the client and one rotation (%d partial)", next, partial)

	for _, id := range []string{"logger", "quitter"} {
		must(t, c.DeleteContainer(ctx, id))
	}
	if _, err := os.Stat(quitterDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("quitter state dir after delete: %v", err)
	}
	// The shim hands free memory back after 2s without requests.
	time.Sleep(3 * time.Second)
	t.Logf("shim memory idle (no containers, after use): %s", memory(t, shimPid))
	must(t, c.Shutdown(ctx))
	if alive(shimPid) {
		t.Error("shim still alive after Shutdown")
	}
	if _, err := os.Stat(filepath.Join(dir, shim.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after shutdown: %v", err)
	}
	if _, err := shim.Connect(ctx, dir); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("connect after shutdown: %v, want Unavailable", err)
	}
}

// idleBudgetKiB is the memory an idle pod's shim may use, as PSS.
const idleBudgetKiB = 5 << 10

// TestShimIdleMemory measures the memory of a fresh shim, with no
// containers and with one idle container, and holds it to the per-pod
// budget of 5 MiB PSS (not with the race detector, which multiplies it).
func TestShimIdleMemory(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "shim")
	cleanupShim(t, dir)
	c, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: "idle",
		Args: []string{"--runtime-root", filepath.Join(t.TempDir(), "runtime")}})
	must(t, err)
	// Starting again finds the running one.
	c2, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: "idle"})
	must(t, err)
	if c2.Pid() != c.Pid() {
		t.Errorf("second Start gave pid %d, want the running %d", c2.Pid(), c.Pid())
	}
	if _, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: "other"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Start for another pod in the same dir: %v", err)
	}
	// Past the shim's 2s trim delay after the last request.
	time.Sleep(3 * time.Second)
	t.Logf("idle shim memory, no containers: %s", memory(t, c.Pid()))
	checkBudget(t, "no containers", c.Pid())

	// An idle pod: one running container that prints nothing.
	_, err = c.CreateContainer(ctx, shim.CreateRequest{ID: "sleeper", Spec: containerSpec(false, "sleep", "1000"),
		Rootfs: newRootfs(t), LogPath: filepath.Join(t.TempDir(), "sleeper.log")})
	must(t, err)
	_, err = c.StartContainer(ctx, "sleeper")
	must(t, err)
	// As skiffd does, hold a wait on the container for its exit: a shim
	// whose only request in flight is a wait is idle, and trims.
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { _, err := c.Wait(wctx, "sleeper"); waited <- err }()
	time.Sleep(3 * time.Second)
	t.Logf("idle shim memory, one running container, a wait held: %s", memory(t, c.Pid()))
	checkBudget(t, "one running container, a wait held", c.Pid())
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Errorf("held wait: %v, want it cancelled", err)
	}
}

// checkBudget fails t if the shim pid uses more than idleBudgetKiB PSS.
func checkBudget(t *testing.T, what string, pid int) {
	t.Helper()
	if os.Getenv("SKIFF_TEST_SHIM_RACE") != "" {
		return
	}
	roll, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatalf("read the shim's PSS: %v", err)
	}
	for _, l := range strings.Split(string(roll), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "Pss:" {
			kib, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("smaps_rollup line %q: %v", l, err)
			}
			if kib > idleBudgetKiB {
				t.Errorf("idle shim, %s: %d KiB PSS, over the %d KiB budget", what, kib, idleBudgetKiB)
			}
			return
		}
	}
	t.Fatalf("no Pss line in the shim's smaps_rollup")
}

// TestShimTty runs a container with a terminal: the executor allocates the
// pty in the container and the shim logs its output as stdout.
func TestShimTty(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "shim")
	cleanupShim(t, dir)
	c, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: "tty",
		Args: []string{"--runtime-root", filepath.Join(t.TempDir(), "runtime")}})
	must(t, err)
	logPath := filepath.Join(t.TempDir(), "tty.log")
	_, err = c.CreateContainer(ctx, shim.CreateRequest{
		ID: "t", Spec: containerSpec(true, "sh", "-c", "tty; echo done"), Rootfs: newRootfs(t),
		LogPath: logPath, Tty: true, Stdin: true,
	})
	must(t, err)
	_, err = c.StartContainer(ctx, "t")
	must(t, err)
	st, err := c.Wait(ctx, "t")
	must(t, err)
	if st.ExitCode != 0 || st.Reason != shim.ReasonCompleted {
		t.Errorf("tty container: %+v", st)
	}
	var texts []string
	for _, r := range records(t, logPath) {
		if r.Stream != crilog.Stdout {
			t.Errorf("tty record on %s", r.Stream)
		}
		texts = append(texts, string(r.Tag)+" "+string(r.Text))
	}
	if len(texts) != 2 || !strings.HasPrefix(texts[0], "F /dev/pts/") || texts[1] != "F done" {
		t.Errorf("tty log %q", texts)
	}
	must(t, c.DeleteContainer(ctx, "t"))

	// Interactive exec with a terminal the executor allocates in the
	// container, sized by the client, then resized.
	_, err = c.CreateContainer(ctx, shim.CreateRequest{ID: "box", Spec: containerSpec(false, "sleep", "100"), Rootfs: newRootfs(t)})
	must(t, err)
	_, err = c.StartContainer(ctx, "box")
	must(t, err)
	var out bytes.Buffer
	pr, pw := io.Pipe()
	resize := make(chan shim.TermSize, 1)
	done := make(chan error, 1)
	var code int
	go func() {
		var err error
		code, err = c.Exec(ctx, shim.ExecRequest{ID: "box", Cmd: []string{"sh", "-c", `stty size; tty; while read x; do [ "$x" = q ] && exit 0; stty size; done`}, Tty: true,
			Size: &shim.TermSize{Width: 100, Height: 40}}, shim.StreamIO{Stdin: pr, Stdout: lockedWriter(&out), Resize: resize})
		done <- err
	}()
	waitFor(t, "first stty output", func() bool { return strings.Contains(readLocked(&out), "40 100") })
	resize <- shim.TermSize{Width: 120, Height: 50}
	// Resize and input come from different goroutines of the client:
	// poke until the new size shows.
	waitFor(t, "resized stty output", func() bool {
		io.WriteString(pw, "go\r")
		return strings.Contains(readLocked(&out), "50 120")
	})
	io.WriteString(pw, "q\r")
	must(t, <-done)
	got := strings.ReplaceAll(readLocked(&out), "\r", "")
	if code != 0 || !strings.Contains(got, "40 100\n") || !strings.Contains(got, "50 120\n") || !strings.Contains(got, "/dev/pts/") {
		t.Errorf("tty exec: code %d, output %q", code, got)
	}
	must(t, c.KillContainer(ctx, "box", syscall.SIGKILL, true))
	_, err = c.Wait(ctx, "box")
	must(t, err)
	must(t, c.DeleteContainer(ctx, "box"))
}

var outMu sync.Mutex

type lockedBuf struct{ b *bytes.Buffer }

func (l lockedBuf) Write(p []byte) (int, error) {
	outMu.Lock()
	defer outMu.Unlock()
	return l.b.Write(p)
}

func lockedWriter(b *bytes.Buffer) io.Writer { return lockedBuf{b} }

func readLocked(b *bytes.Buffer) string {
	outMu.Lock()
	defer outMu.Unlock()
	return b.String()
}

// TestShimSharedPID starts a shim with a pod init: it is PID 1 of a new
// PID namespace, a container that joins it sees it as PID 1, orphans in the
// namespace are reaped, and Shutdown ends it.
func TestShimSharedPID(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "shim")
	cleanupShim(t, dir)
	c, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: "shared", SharePID: true,
		Args: []string{"--runtime-root", filepath.Join(t.TempDir(), "runtime")}})
	must(t, err)
	initPid := c.InitPid()
	if initPid <= 0 {
		t.Fatalf("InitPid %d", initPid)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", initPid))
	must(t, err)
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "NSpid:" {
			if len(f) != 3 || f[2] != "1" {
				t.Errorf("pod init %s, want PID 1 in a child namespace", l)
			}
		}
	}
	if _, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: "shared"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Start without SharePID on a sharing shim: %v", err)
	}
	// The init is a few pages of C, not a Go runtime (which alone takes
	// over 500 KiB of anonymous memory).
	t.Logf("pod init memory: %s", memory(t, initPid))
	if anon := statusKiB(t, initPid, "RssAnon:"); anon > podInitAnonBudgetKiB {
		t.Errorf("pod init: %d KiB anonymous memory, over the %d KiB budget", anon, podInitAnonBudgetKiB)
	}

	sp := containerSpec(false, "sh", "-c",
		`(sleep 0.1 &); sleep 1; tr '\0' ' ' </proc/1/cmdline; echo; cat /proc/[0-9]*/stat | grep -c ') Z ' || true`)
	for i, ns := range sp.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			sp.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/pid", initPid)
		}
	}
	logPath := filepath.Join(t.TempDir(), "c.log")
	_, err = c.CreateContainer(ctx, shim.CreateRequest{ID: "joiner", Spec: sp, Rootfs: newRootfs(t), LogPath: logPath})
	must(t, err)
	_, err = c.StartContainer(ctx, "joiner")
	must(t, err)
	st, err := c.Wait(ctx, "joiner")
	must(t, err)
	if st.ExitCode != 0 {
		t.Errorf("joiner: %+v", st)
	}
	var texts []string
	for _, r := range records(t, logPath) {
		texts = append(texts, string(r.Text))
	}
	if len(texts) != 2 || strings.TrimSpace(texts[0]) != "skiff-pod-init" || texts[1] != "0" {
		t.Errorf("joiner saw %q, want the pod init as PID 1 and no zombies", texts)
	}
	must(t, c.DeleteContainer(ctx, "joiner"))
	must(t, c.Shutdown(ctx))
	if alive(initPid) {
		t.Error("pod init alive after Shutdown")
	}
}

// TestShimOOMKilled checks that a container killed by the OOM killer of
// its memory cgroup is reported (and recorded) as OOMKilled.
func TestShimOOMKilled(t *testing.T) {
	ctx, c := startCgroupShim(t, "oom")
	limit := int64(32 << 20)
	sp := containerSpec(false, "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1")
	sp.Linux.CgroupsPath = testCgroup("oom")
	sp.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	_, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "hog", Spec: sp, Rootfs: newRootfs(t)})
	must(t, err)
	_, err = c.StartContainer(ctx, "hog")
	must(t, err)
	st, err := c.Wait(ctx, "hog")
	must(t, err)
	if !st.OOMKilled || st.Reason != shim.ReasonOOMKilled || st.ExitCode != 137 {
		t.Errorf("hog: %+v", st)
	}
	rec, err := shim.ReadExitFile(st.StateDir)
	must(t, err)
	if !rec.OOMKilled || rec.Reason != shim.ReasonOOMKilled {
		t.Errorf("exit record %+v", rec)
	}
	must(t, c.DeleteContainer(ctx, "hog"))
	if _, err := cgroups.Load(sp.Linux.CgroupsPath); !errdefs.IsNotFound(err) {
		t.Errorf("cgroup left behind: %v", err)
	}
}

// startCgroupShim starts the shim of pod, with its own runtime root, for a
// test whose containers get cgroups (testCgroup); it skips without them.
func startCgroupShim(t *testing.T, pod string) (context.Context, *shim.Client) {
	t.Helper()
	needRoot(t)
	if _, err := cgroups.DetectLayout(); err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "shim")
	cleanupShim(t, dir)
	c, err := shim.Start(ctx, shim.StartOptions{Binary: shimPath, Dir: dir, PodID: pod,
		Args: []string{"--runtime-root", filepath.Join(t.TempDir(), "runtime")}})
	must(t, err)
	return ctx, c
}

// testCgroup is the cgroup path of a test's container, named for the test
// process.
func testCgroup(name string) string {
	return "/skiff-test-shim-" + strconv.Itoa(os.Getpid()) + "-" + name
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(t, err)
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+2:]))
	ppid, err := strconv.Atoi(f[1])
	must(t, err)
	return ppid
}

// TestShimConcurrentDeletes: deletes of one exited container that arrive
// together (a pod's stop and the container's release at its exit) delete it
// once: its poststop hook runs once, every delete succeeds or finds it gone.
func TestShimConcurrentDeletes(t *testing.T) {
	ctx, c := startCgroupShim(t, "deletes")
	ran := filepath.Join(t.TempDir(), "poststop")
	sp := containerSpec(false, "true")
	sp.Linux.CgroupsPath = testCgroup("deletes")
	sp.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo ran >> " + ran}}}}
	_, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "once", Spec: sp, Rootfs: newRootfs(t)})
	must(t, err)
	_, err = c.StartContainer(ctx, "once")
	must(t, err)
	_, err = c.Wait(ctx, "once")
	must(t, err)
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() { errs <- c.DeleteContainer(ctx, "once") }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("concurrent delete: %v", err)
		}
	}
	b, err := os.ReadFile(ran)
	must(t, err)
	if n := strings.Count(string(b), "ran\n"); n != 1 {
		t.Errorf("poststop hook ran %d times, want once", n)
	}
	if _, err := cgroups.Load(sp.Linux.CgroupsPath); !errdefs.IsNotFound(err) {
		t.Errorf("cgroup left behind: %v", err)
	}
}
