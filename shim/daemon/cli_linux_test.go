package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
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

// fakeOCIRuntime stands in for runc: "create" forks the container's "init"
// (a subshell that exits with $CODE after $DELAY) and exits at once, as runc
// does, leaving the init to the nearest subreaper; every call is logged.
const fakeOCIRuntime = `#!/bin/sh
echo "$*" >> "$CALLS"
pidfile=
while [ $# -gt 0 ]; do
	case "$1" in
	--pid-file) pidfile=$2; shift ;;
	--log) log=$2; shift ;;
	create|exec|start|kill|delete|update) cmd=$1 ;;
	esac
	shift
done
case "$cmd" in
create|exec)
	if [ -n "$FAIL" ]; then
		echo '{"level":"error","msg":"'"$FAIL"'"}' >> "$log"
		echo "$FAIL" >&2
		exit 1
	fi
	(sleep "$DELAY"; exit "$CODE") &
	echo $! > "$pidfile"
	;;
esac
exit 0
`

// TestCLIRuntimeWaitsForItsGrandchild: the init the runtime forks is
// re-parented to the shim (a subreaper) when the runtime exits, and Wait
// gets its real status, also when it exited before Create returned.
func TestCLIRuntimeWaitsForItsGrandchild(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-runc")
	if err := os.WriteFile(bin, []byte(fakeOCIRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "calls")
	r := NewCLIRuntime(bin, filepath.Join(dir, "root"), filepath.Join(dir, "bundles"))
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Root: &specs.Root{Path: "/nonexistent"}}
	ctx := context.Background()
	for _, tc := range []struct {
		name, delay string
		code        int
	}{
		{"exits later", "0.2", 7},
		{"exited before Create returned", "0", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.Env = []string{"PATH=/usr/bin:/bin", "CALLS=" + calls, "DELAY=" + tc.delay, "CODE=" + strconv.Itoa(tc.code)}
			p, err := r.Create(ctx, "c1", spec, filepath.Join(dir, "rootfs"), Stdio{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.delay == "0" {
				time.Sleep(100 * time.Millisecond) // a zombie by now
			}
			es, err := p.Wait()
			if err != nil || es.Code != tc.code {
				t.Fatalf("Wait = %+v, %v; want exit %d", es, err, tc.code)
			}
			b, err := os.ReadFile(filepath.Join(dir, "bundles", "c1", "config.json"))
			if err != nil || !strings.Contains(string(b), `"path":"`+filepath.Join(dir, "rootfs")+`"`) {
				t.Errorf("bundle config.json %s, %v: want root.path the rootfs given", b, err)
			}
			if err := r.Delete(ctx, "c1"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "bundles", "c1")); !os.IsNotExist(err) {
				t.Errorf("bundle left after Delete: %v", err)
			}
		})
	}

	// A failed create reports the runtime's logged error and leaves no bundle.
	r.Env = []string{"PATH=/usr/bin:/bin", "CALLS=" + calls, "FAIL=exec: nope: executable file not found in PATH"}
	if _, err := r.Create(ctx, "c2", spec, "", Stdio{}); err == nil || !strings.Contains(err.Error(), "exec: nope: executable file not found") {
		t.Errorf("failed create: %v, want the runtime's error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bundles", "c2")); !os.IsNotExist(err) {
		t.Errorf("bundle left after a failed create: %v", err)
	}
}
