package crishim

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/shim"
)

func TestExitStateFromRecords(t *testing.T) {
	state := t.TempDir()
	s := New("/nonexistent/skiff-shim", state).(shims)
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
