package crishim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/shim"
)

func TestExitStateFromRecords(t *testing.T) {
	state := t.TempDir()
	s := New(Options{Binary: "/nonexistent/skiff-shim", StateDir: state}).(shims)
	if _, ok := s.ExitState("pod", "none"); ok {
		t.Fatal("exit state of a container without a record")
	}
	for _, tc := range []struct {
		id         string
		rec        shim.ExitRecord
		wantReason string
	}{
		{"done", shim.ExitRecord{ExitCode: 0, Reason: shim.ReasonCompleted}, shim.ReasonCompleted},
		{"old-record", shim.ExitRecord{ExitCode: 3}, shim.ReasonError},
		{"oom", shim.ExitRecord{ExitCode: 137, OOMKilled: true}, shim.ReasonOOMKilled},
		{"lost", shim.ExitRecord{ExitCode: 137, Reason: cri.ReasonShimLost}, cri.ReasonShimLost},
	} {
		t.Run(tc.id, func(t *testing.T) {
			dir := s.containerDir(tc.id)
			if dir != filepath.Join(state, "containers", tc.id) {
				t.Fatalf("container dir %s", dir)
			}
			mkdir(t, dir)
			tc.rec.ID, tc.rec.FinishedAt = tc.id, time.Now()
			if err := shim.WriteExitFile(dir, tc.rec); err != nil {
				t.Fatal(err)
			}
			st, ok := s.ExitState("pod", tc.id)
			if !ok || st.Status != cri.StateExited || st.Reason != tc.wantReason || st.ExitCode != int32(tc.rec.ExitCode) {
				t.Fatalf("ExitState = %+v, %v; want exited with reason %s", st, ok, tc.wantReason)
			}
			if (tc.wantReason == cri.ReasonShimLost) != (st.Message != "") {
				t.Errorf("message %q for reason %s", st.Message, st.Reason)
			}
		})
	}
}

func TestToStateFillsTheReason(t *testing.T) {
	st := toState(shim.ContainerState{Status: shim.StatusExited, ExitCode: 0})
	if st.Status != cri.StateExited || st.Reason != shim.ReasonCompleted {
		t.Errorf("toState of an exit without a reason = %+v", st)
	}
	if st := toState(shim.ContainerState{Status: "weird"}); st.Status != cri.StateUnknown {
		t.Errorf("toState of an unknown status = %+v", st)
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeHandlerShims: a pod of a handler that names an OCI runtime
// gets a shim driving that runtime; any other pod the executor. What is
// cleaned up after a lost shim goes to whichever runtime keeps the
// container's state.
func TestRuntimeHandlerShims(t *testing.T) {
	state := t.TempDir()
	runcRoot := filepath.Join(t.TempDir(), "runc")
	s := New(Options{Binary: "/usr/bin/skiff-shim", StateDir: state, Runtimes: map[string]OCIRuntime{"runc": {Binary: "/usr/sbin/runc", Root: runcRoot}}}).(shims)
	for _, tc := range []struct {
		handler string
		want    string
	}{
		{"", "--runtime-root " + filepath.Join(state, "oci")},
		{"skiff", "--runtime-root " + filepath.Join(state, "oci")},
		{"builtin-other", "--runtime-root " + filepath.Join(state, "oci")},
		{"runc", "--runtime-binary /usr/sbin/runc --runtime-root " + runcRoot},
	} {
		if got := strings.Join(s.shimArgs(tc.handler), " "); got != tc.want {
			t.Errorf("shim args of handler %q = %q, want %q", tc.handler, got, tc.want)
		}
	}

	debug := New(Options{Binary: "/usr/bin/skiff-shim", StateDir: state, Debug: true}).(shims)
	if got, want := strings.Join(debug.shimArgs(""), " "), "--debug --runtime-root "+filepath.Join(state, "oci"); got != want {
		t.Errorf("shim args with Debug = %q, want %q", got, want)
	}

	if cli := s.runtimeFor("c-none"); cli.OCI || cli.Binary != "/usr/bin/skiff-shim" {
		t.Errorf("container without state: %+v, want the executor", cli)
	}
	mkdir(t, filepath.Join(runcRoot, "c-runc"))
	if cli := s.runtimeFor("c-runc"); !cli.OCI || cli.Binary != "/usr/sbin/runc" || cli.Root != runcRoot {
		t.Errorf("container in runc's root: %+v, want runc", cli)
	}
	mkdir(t, filepath.Join(state, "oci", "c-exec"))
	if cli := s.runtimeFor("c-exec"); cli.OCI {
		t.Errorf("container in the executor's root: %+v, want the executor", cli)
	}
}
