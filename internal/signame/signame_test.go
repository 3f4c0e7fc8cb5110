package signame

import (
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{
		{"SIGTERM", syscall.SIGTERM, true},
		{"TERM", syscall.SIGTERM, true},
		{"term", syscall.SIGTERM, true},
		{" 9 ", syscall.SIGKILL, true},
		{"SIGCLD", syscall.SIGCHLD, true},
		{"SIGRTMIN", 34, true},
		{"SIGRTMIN+3", 37, true},
		{"RTMAX-1", 63, true},
		{"SIGRTMAX", 64, true},
		{"SIGRTMIN-1", 0, false},
		{"SIGRTMAX+1", 0, false},
		{"65", 65, false},
		{"0", 0, false},
		{"SIGNOPE", 0, false},
		{"", 0, false},
	} {
		got, ok := Parse(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Parse(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
