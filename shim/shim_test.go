package shim_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
	"github.com/skiffcri/skiff/shim/crilog"
	"github.com/skiffcri/skiff/shim/daemon"
	"github.com/skiffcri/skiff/shim/shimtest"
)

// serve runs a shim with host processes in this test process and returns a
// client. The daemon stops (killing what is left) when the test ends.
func serve(t *testing.T) (*shim.Client, string) {
	t.Helper()
	return serveIn(t, t.TempDir())
}

func serveIn(t *testing.T, dir string) (*shim.Client, string) {
	t.Helper()
	return serveRuntime(t, dir, shimtest.NewHostRuntime())
}

func serveRuntime(t *testing.T, dir string, rt daemon.Runtime) (*shim.Client, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- daemon.Serve(ctx, daemon.Config{Dir: dir, PodID: "pod1", Runtime: rt, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	c, err := shim.Connect(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		sts, _ := c.ListContainers(cctx)
		for _, st := range sts {
			c.KillContainer(cctx, st.ID, syscall.SIGKILL, true)
			c.Wait(cctx, st.ID)
			c.DeleteContainer(cctx, st.ID)
		}
		cancel()
		<-done
	})
	return c, dir
}

func spec(args ...string) *specs.Spec {
	return &specs.Spec{Process: &specs.Process{
		Args: args,
		Env:  []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Cwd:  "/",
	}}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readRecords(t *testing.T, path string) []crilog.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []crilog.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, err := crilog.ParseRecord(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		r.Text = append([]byte(nil), r.Text...)
		out = append(out, r)
	}
	return out
}

func TestLifecycle(t *testing.T) {
	c, dir := serve(t)
	ctx := ctxT(t)
	logPath := filepath.Join(t.TempDir(), "c1.log")
	st, err := c.CreateContainer(ctx, shim.CreateRequest{
		ID:      "c1",
		Spec:    spec("sh", "-c", "echo out; echo err >&2; printf tail; exit 3"),
		LogPath: logPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != shim.StatusCreated || st.Pid <= 0 {
		t.Fatalf("after create: %+v", st)
	}
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "c1", Spec: spec("true")}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}
	if st, err = c.StartContainer(ctx, "c1"); err != nil || st.Status != shim.StatusRunning || st.StartedAt.IsZero() {
		t.Fatalf("start: %+v, %v", st, err)
	}
	st, err = c.Wait(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != shim.StatusExited || st.ExitCode != 3 || st.Reason != shim.ReasonError || st.FinishedAt.IsZero() {
		t.Errorf("after exit: %+v", st)
	}
	rec, err := shim.ReadExitFile(shim.ContainerStateDir(dir, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.ExitCode != 3 || rec.ID != "c1" || !rec.FinishedAt.Equal(st.FinishedAt) {
		t.Errorf("exit record %+v", rec)
	}
	var got []string
	for _, r := range readRecords(t, logPath) {
		got = append(got, string(r.Stream)+" "+string(r.Tag)+" "+string(r.Text))
	}
	// stdout and stderr are separate pipes: only the order within a
	// stream is defined.
	want := map[string]bool{"stdout F out": true, "stderr F err": true, "stdout P tail": true}
	if len(got) != len(want) {
		t.Errorf("log records %q", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("unexpected record %q in %q", g, got)
		}
	}
	if err := c.DeleteContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ContainerState(ctx, "c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("state after delete: %v, want NotFound", err)
	}
	if _, err := os.Stat(shim.ContainerStateDir(dir, "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir after delete: %v", err)
	}
}

// TestUpdateResources checks that the update operation reaches the runtime
// with the resources as sent, for a running and an exited container, and
// that an unknown container or a missing body is refused.
func TestUpdateResources(t *testing.T) {
	rt := shimtest.NewHostRuntime()
	c, _ := serveRuntime(t, t.TempDir(), rt)
	ctx := ctxT(t)
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "c1", Spec: spec("sleep", "1000")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	limit, quota, period := int64(64<<20), int64(50000), uint64(100000)
	res := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &limit},
		CPU:            &specs.LinuxCPU{Quota: &quota, Period: &period, Cpus: "0"},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "max"},
	}
	if err := c.UpdateResources(ctx, "c1", res); err != nil {
		t.Fatalf("UpdateResources: %v", err)
	}
	if got := rt.Resources("c1"); !reflect.DeepEqual(got, res) {
		t.Errorf("the runtime got %+v, want %+v", got, res)
	}

	// An exited container keeps its cgroup until delete.
	if err := c.KillContainer(ctx, "c1", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	limit2 := int64(128 << 20)
	res2 := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit2}}
	if err := c.UpdateResources(ctx, "c1", res2); err != nil {
		t.Fatalf("UpdateResources of an exited container: %v", err)
	}
	if got := rt.Resources("c1"); !reflect.DeepEqual(got, res2) {
		t.Errorf("after the second update the runtime has %+v, want %+v", got, res2)
	}

	if err := c.UpdateResources(ctx, "nope", res); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("update of an unknown container: %v, want NotFound", err)
	}
	if err := c.UpdateResources(ctx, "c1", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("update without resources: %v, want InvalidArgument", err)
	}
}

// TestLongSocketPath serves from a directory too deep for a unix socket
// address.
func TestLongSocketPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100), "pod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, _ := serveIn(t, dir)
	ctx := ctxT(t)
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "x", Spec: spec("sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if code, err := c.Exec(ctx, shim.ExecRequest{ID: "x", Cmd: []string{"echo", "deep"}}, shim.StreamIO{Stdout: &out}); err != nil || code != 0 || out.String() != "deep\n" {
		t.Errorf("exec: %d %q %v", code, out.String(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, shim.SocketName)); err != nil {
		t.Errorf("socket not at its real path: %v", err)
	}
}

func TestKillAndStates(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "sleeper", Spec: spec("sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"start twice", func() error { _, err := c.StartContainer(ctx, "sleeper"); return err }(), errdefs.ErrFailedPrecondition},
		{"delete running", c.DeleteContainer(ctx, "sleeper"), errdefs.ErrFailedPrecondition},
		{"shutdown busy", c.Shutdown(ctx), errdefs.ErrFailedPrecondition},
		{"state unknown", func() error { _, err := c.ContainerState(ctx, "nope"); return err }(), errdefs.ErrNotFound},
		{"bad id", func() error {
			_, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "../x", Spec: spec("true")})
			return err
		}(), errdefs.ErrInvalidArgument},
		{"log dir missing", func() error {
			_, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "x", Spec: spec("true"), LogPath: "/nonexistent-skiff-test/x.log"})
			return err
		}(), errdefs.ErrInvalidArgument},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := c.Wait(wctx, "sleeper")
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait with short deadline: %v", err)
	}
	if err := c.KillContainer(ctx, "sleeper", syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx, "sleeper")
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != 128+15 || st.Signal != 15 || st.Reason != shim.ReasonError {
		t.Errorf("killed: %+v", st)
	}
	if err := c.KillContainer(ctx, "sleeper", syscall.SIGKILL, false); err != nil {
		t.Errorf("kill after exit: %v, want success", err)
	}
	sts, err := c.ListContainers(ctx)
	if err != nil || len(sts) != 1 || sts[0].ID != "sleeper" {
		t.Errorf("list: %+v, %v", sts, err)
	}
}

func TestDeleteCreated(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "idle", Spec: spec("true")}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteContainer(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	if sts, _ := c.ListContainers(ctx); len(sts) != 0 {
		t.Errorf("list after delete: %+v", sts)
	}
}

func TestExecSync(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	if _, err := c.ExecSync(ctx, shim.ExecSyncRequest{ID: "nope", Cmd: []string{"true"}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("exec in unknown container: %v", err)
	}
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "box", Spec: spec("sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecSync(ctx, shim.ExecSyncRequest{ID: "box", Cmd: []string{"true"}}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("exec before start: %v", err)
	}
	if _, err := c.StartContainer(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cmd        []string
		timeout    time.Duration
		wantOut    string
		wantErrOut string
		wantCode   int
		wantErr    error
		wantOutLen int
	}{
		{name: "output and code", cmd: []string{"sh", "-c", "echo hi; echo bad >&2; exit 7"}, wantOut: "hi\n", wantErrOut: "bad\n", wantCode: 7},
		{name: "path lookup", cmd: []string{"echo", "a b"}, wantOut: "a b\n"},
		{name: "timeout", cmd: []string{"sleep", "30"}, timeout: 200 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "capped", cmd: []string{"head", "-c", strconv.Itoa(shim.MaxExecOutput + 4096), "/dev/zero"}, wantOutLen: shim.MaxExecOutput},
		{name: "background child keeps pipe", cmd: []string{"sh", "-c", "sleep 3 & echo started"}, wantOut: "started\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.ExecSync(ctx, shim.ExecSyncRequest{ID: "box", Cmd: tc.cmd, Timeout: tc.timeout})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantOutLen > 0 {
				if len(res.Stdout) != tc.wantOutLen {
					t.Errorf("stdout %d bytes, want %d", len(res.Stdout), tc.wantOutLen)
				}
				return
			}
			if string(res.Stdout) != tc.wantOut || string(res.Stderr) != tc.wantErrOut || res.ExitCode != tc.wantCode {
				t.Errorf("got %q %q %d, want %q %q %d", res.Stdout, res.Stderr, res.ExitCode, tc.wantOut, tc.wantErrOut, tc.wantCode)
			}
		})
	}
}

func TestReopenLog(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	logPath := filepath.Join(t.TempDir(), "r.log")
	script := `i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); sleep 0.002; done`
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "r", Spec: spec("sh", "-c", script), LogPath: logPath}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	// Rotate twice while it writes.
	var files []string
	for n := range 2 {
		waitForLines(t, logPath, 20)
		rotated := logPath + "." + strconv.Itoa(n)
		if err := os.Rename(logPath, rotated); err != nil {
			t.Fatal(err)
		}
		if err := c.ReopenLog(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		files = append(files, rotated)
	}
	files = append(files, logPath)
	if _, err := c.Wait(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, f := range files {
		recs := readRecords(t, f)
		if len(recs) == 0 {
			t.Errorf("%s is empty", f)
		}
		for _, r := range recs {
			if want := "line " + strconv.Itoa(next); string(r.Text) != want || r.Tag != 'F' || r.Stream != crilog.Stdout {
				t.Fatalf("%s: record %q %c %s, want %q", f, r.Text, r.Tag, r.Stream, want)
			}
			next++
		}
	}
	if next != 400 {
		t.Errorf("%d lines across rotations, want 400", next)
	}
	if err := c.ReopenLog(ctx, "r"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("reopen after exit: %v", err)
	}
}

func TestTty(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	logPath := filepath.Join(t.TempDir(), "tty.log")
	sp := spec("sh", "-c", "if [ -t 1 ]; then echo tty; else echo notty; fi")
	sp.Process.Terminal = true
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "t", Spec: sp, Tty: true, LogPath: logPath}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Wait(ctx, "t"); err != nil || st.ExitCode != 0 || st.Reason != shim.ReasonCompleted {
		t.Fatalf("wait: %+v %v", st, err)
	}
	recs := readRecords(t, logPath)
	if len(recs) != 1 || string(recs[0].Text) != "tty" || recs[0].Stream != crilog.Stdout {
		t.Errorf("tty log %+v", recs)
	}
}

func TestOrphansReaped(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	// The grandchild outlives its parent and is re-parented to the shim
	// (this test process), which must reap it.
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: "o", Spec: spec("sh", "-c", "sleep 0.2 >/dev/null 2>&1 & exit 0")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "o"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, "o"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		z := zombieChildren(t)
		if len(z) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombie children left: %v", z)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func zombieChildren(t *testing.T) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+2:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

func waitForLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Count(string(b), "\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has fewer than %d lines", path, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
