package oci

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunHooksStateArgsEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := script(t, `cat > "$OUT.state"; echo "$# $1 $2 env=$(env | grep -v -e ^PWD= -e ^SHLVL= -e ^_= | sort | tr '\n' ' ')" > "$OUT"`)
	st := &specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b",
		Annotations: map[string]string{"a": "b"}}
	h := specs.Hook{Path: p, Args: []string{"myhook", "one", "two"}, Env: []string{"OUT=" + out, "X=y"}}
	if err := runHooks(context.Background(), hookCreateRuntime, []specs.Hook{h}, st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), "2 one two env=OUT="+out+" X=y"; got != want {
		t.Errorf("hook saw %q, want %q (its args after args[0], only its env)", got, want)
	}
	b, err = os.ReadFile(out + ".state")
	if err != nil {
		t.Fatal(err)
	}
	var got specs.State
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("state on stdin %q: %v", b, err)
	}
	if got.ID != "c1" || got.Pid != 42 || got.Bundle != "/b" || got.Status != specs.StateCreating ||
		got.Version != specs.Version || got.Annotations["a"] != "b" {
		t.Errorf("state on stdin = %+v", got)
	}
}

func TestRunHooksFailureNamesHookAndOutput(t *testing.T) {
	ok := script(t, "exit 0")
	bad := script(t, "echo something broke >&2; exit 3")
	never := filepath.Join(t.TempDir(), "never")
	third := script(t, "touch "+never)
	err := runHooks(context.Background(), hookCreateContainer,
		[]specs.Hook{{Path: ok}, {Path: bad}, {Path: third}}, &specs.State{ID: "c"})
	if err == nil {
		t.Fatal("a failing hook did not fail the phase")
	}
	for _, want := range []string{"createContainer hook " + bad, "exit status 3", "something broke"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(never); err == nil {
		t.Error("the hook after the failing one ran")
	}
}

func TestRunHookTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The hook leaves a child behind that holds its output pipe; the
	// timeout must kill both and return soon.
	p := script(t, "sleep 60 & echo $! > "+pidFile+"; echo waiting; wait")
	timeout := 1
	start := time.Now()
	err := runHooks(context.Background(), hookPrestart, []specs.Hook{{Path: p, Timeout: &timeout}}, &specs.State{})
	if err == nil {
		t.Fatal("a hook past its timeout succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("runHooks took %v for a 1 s timeout", d)
	}
	if !strings.Contains(err.Error(), "timeout of 1s") || !strings.Contains(err.Error(), "waiting") {
		t.Errorf("error %q does not say timeout and output", err)
	}
	b, _ := os.ReadFile(pidFile)
	if pid := strings.TrimSpace(string(b)); pid != "" {
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, err := os.ReadFile("/proc/" + pid + "/stat")
			if err != nil || strings.Contains(string(st), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the hook's child %s survived the timeout", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestRunHookContextCancel(t *testing.T) {
	p := script(t, "sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := runHooks(ctx, hookCreateRuntime, []specs.Hook{{Path: p}}, &specs.State{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

func TestValidateHooks(t *testing.T) {
	zero, one := 0, 1
	for _, c := range []struct {
		name  string
		hooks *specs.Hooks
		ok    bool
	}{
		{"nil", nil, true},
		{"fine", &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: &one}}}, true},
		{"relative", &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "true"}}}, false},
		{"zero timeout", &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/true", Timeout: &zero}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validateHooks(c.hooks)
			if (err == nil) != c.ok {
				t.Fatalf("validateHooks = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not InvalidArgument", err)
			}
		})
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 4}
	b.Write([]byte("ab"))
	b.Write([]byte("cdef"))
	b.Write([]byte("gh"))
	if got := b.String(); got != "abcd…" {
		t.Errorf("got %q", got)
	}
}

func TestFeaturesListHooks(t *testing.T) {
	f := (&Executor{StateDir: t.TempDir()}).Features()
	want := []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
	if strings.Join(f.Hooks, ",") != strings.Join(want, ",") {
		t.Errorf("features hooks = %v, want %v", f.Hooks, want)
	}
}

// TestStartResult: Start reads the start result FIFO to its end, which is
// the init's execve (nothing written) or its exit after a failed
// startContainer hook (the error written), and gives up with ctx.
func TestStartResult(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		hang      bool
	}{{"exec", "", false}, {"hook failed", "startContainer hook /x: exit status 1", false}, {"ctx", "", true}} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), resultFifoName)
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			// As the init holds it: read-write, so the reader sees EOF
			// only once it is closed.
			w, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			r, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if !c.hang {
				go func() {
					time.Sleep(50 * time.Millisecond)
					if c.msg != "" {
						w.Write([]byte(c.msg))
					}
					w.Close()
				}()
			}
			got, err := readStartResult(ctx, r)
			if c.hang {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want the context's", err)
				}
				return
			}
			if err != nil || got != c.msg {
				t.Fatalf("readStartResult = %q, %v; want %q", got, err, c.msg)
			}
		})
	}
}
