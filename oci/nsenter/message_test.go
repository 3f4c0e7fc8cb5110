package nsenter

import (
	"strings"
	"testing"
)

func TestParsePid(t *testing.T) {
	for _, tc := range []struct {
		in      string
		pid     int
		wantErr string
	}{
		{`{"type":"pid","pid":1234}`, 1234, ""},
		{`{"type":"error","error":"skiff-nsenter: setns: Operation not permitted"}`, 0, "setns: Operation not permitted"},
		{``, 0, "exited while joining"},
		{`{"type":"pid","pid":0}`, 0, "unexpected message"},
		{`{"type":"ready"}`, 0, "unexpected message"},
		{`garbage`, 0, "bad message"},
	} {
		pid, err := ParsePid([]byte(tc.in))
		if pid != tc.pid || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ParsePid(%q) = %d, %v; want %d, error containing %q", tc.in, pid, err, tc.pid, tc.wantErr)
		}
	}
}
