package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCLIRuntimeArgs pins the OCI runtime command lines the shim runs.
func TestCLIRuntimeArgs(t *testing.T) {
	r := NewCLIRuntime("/usr/sbin/runc", "/run/skiff/runc", "/run/skiff/shims/p/bundles")
	for _, tc := range []struct {
		name string
		got  []string
		want string
	}{
		{"create", r.createArgs("c1", "/b/c1", "/b/c1/init.pid", ""),
			"--root /run/skiff/runc --log /b/c1/runtime.log --log-format json create --bundle /b/c1 --pid-file /b/c1/init.pid c1"},
		{"create with a terminal", r.createArgs("c1", "/b/c1", "/b/c1/init.pid", "/tmp/cs/s"),
			"--root /run/skiff/runc --log /b/c1/runtime.log --log-format json create --bundle /b/c1 --pid-file /b/c1/init.pid --console-socket /tmp/cs/s c1"},
		{"exec", r.execArgs("c1", "/b/c1/x/log", "/b/c1/x/p.json", "/b/c1/x/pid", ""),
			"--root /run/skiff/runc --log /b/c1/x/log --log-format json exec --process /b/c1/x/p.json --pid-file /b/c1/x/pid --detach c1"},
		{"exec with a terminal", r.execArgs("c1", "", "/p.json", "/pid", "/cs"),
			"--root /run/skiff/runc exec --process /p.json --pid-file /pid --detach --console-socket /cs c1"},
		{"kill", r.killArgs("c1", syscall.SIGTERM, false), "--root /run/skiff/runc kill c1 15"},
		{"kill all", r.killArgs("c1", syscall.SIGKILL, true), "--root /run/skiff/runc kill --all c1 9"},
	} {
		if got := strings.Join(tc.got, " "); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		if sub := subcommand(tc.got); !strings.HasPrefix(tc.name, sub) {
			t.Errorf("%s: subcommand %q", tc.name, sub)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := r.bundle(id); err == nil {
			t.Errorf("bundle of id %q accepted", id)
		}
	}
	if b, err := r.bundle("c1"); err != nil || b != "/run/skiff/shims/p/bundles/c1" {
		t.Errorf("bundle = %q, %v", b, err)
	}
}

// TestLastLogError: the error the runtime logged is what a failed create
// reports (its stderr is the container's).
func TestLastLogError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "runtime.log")
	log := `{"level":"info","msg":"starting","time":"x"}
{"level":"error","msg":"first","time":"x"}
not json
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"x"}
{"level":"warning","msg":"later warning","time":"x"}
`
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := lastLogError(p); !strings.Contains(got, `exec: "nope"`) {
		t.Errorf("lastLogError = %q", got)
	}
	if got := lastLogError(filepath.Join(t.TempDir(), "none")); got != "" {
		t.Errorf("lastLogError of a missing file = %q", got)
	}
}

func TestParentPid(t *testing.T) {
	ppid, err := parentPid(os.Getpid())
	if err != nil || ppid != os.Getppid() {
		t.Errorf("parentPid(self) = %d, %v; want %d", ppid, err, os.Getppid())
	}
}

func TestWaitStatus(t *testing.T) {
	// Linux wait status encoding: exit code in bits 8-15, signal in 0-6.
	if es := waitStatus(3 << 8); es.Code != 3 || es.Signal != 0 {
		t.Errorf("exit 3: %+v", es)
	}
	if es := waitStatus(9); es.Code != 137 || es.Signal != syscall.SIGKILL {
		t.Errorf("SIGKILL: %+v", es)
	}
}
