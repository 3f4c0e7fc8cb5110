package shim

import "testing"

func TestExitReason(t *testing.T) {
	for _, tc := range []struct {
		code int
		oom  bool
		want string
	}{
		{0, false, ReasonCompleted},
		{1, false, ReasonError},
		{137, false, ReasonError},
		{137, true, ReasonOOMKilled},
		{0, true, ReasonOOMKilled},
	} {
		if got := ExitReason(tc.code, tc.oom); got != tc.want {
			t.Errorf("ExitReason(%d, %v) = %q, want %q", tc.code, tc.oom, got, tc.want)
		}
	}
}
