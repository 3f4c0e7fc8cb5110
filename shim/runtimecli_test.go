package shim_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
)

// fakeRuntimeCLI is a stand-in for "skiff-shim runtime": it logs its
// arguments to $LOG and answers as $MODE says.
const fakeRuntimeCLI = `#!/bin/sh
echo "$*" >> "$LOG"
case "$MODE" in
running) echo '{"ociVersion":"1.2.0","id":"c1","status":"running","pid":4242,"bundle":""}' ;;
stopped) echo '{"ociVersion":"1.2.0","id":"c1","status":"stopped","bundle":""}' ;;
notfound) echo "skiff-shim runtime $4: container \"c1\": not found" >&2; exit 3 ;;
fail) echo "skiff-shim runtime $4: cgroup busy" >&2; exit 1 ;;
esac
`

// newFakeCLI returns a RuntimeCLI on the fake binary and a function that
// reads the argument lines it was run with.
func newFakeCLI(t *testing.T, mode string) (shim.RuntimeCLI, func() []string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "skiff-shim")
	if err := os.WriteFile(bin, []byte(fakeRuntimeCLI), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log")
	root := filepath.Join(dir, "oci")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	cli := shim.RuntimeCLI{Binary: bin, Root: root, Env: []string{"PATH=/usr/bin:/bin", "LOG=" + log, "MODE=" + mode}}
	return cli, func() []string {
		b, err := os.ReadFile(log)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}

func addState(t *testing.T, cli shim.RuntimeCLI, id string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(cli.Root, id), 0o700); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeCLINoState: without the executor's state directory nothing is
// run at all, so RemoveContainer after a live shim's delete stays fast.
func TestRuntimeCLINoState(t *testing.T) {
	cli, ran := newFakeCLI(t, "running")
	ctx := context.Background()
	if err := cli.Delete(ctx, "c1", true); !errdefs.IsNotFound(err) {
		t.Errorf("Delete without state: %v, want NotFound", err)
	}
	if _, err := cli.State(ctx, "c1"); !errdefs.IsNotFound(err) {
		t.Errorf("State without state: %v, want NotFound", err)
	}
	if ok, err := cli.HasState("c1"); ok || err != nil {
		t.Errorf("HasState = %v, %v", ok, err)
	}
	for _, id := range []string{"", ".", "..", "../c1", "a/b"} {
		if err := cli.Delete(ctx, id, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Delete(%q): %v, want InvalidArgument", id, err)
		}
	}
	if got := ran(); got != nil {
		t.Errorf("the CLI ran: %q", got)
	}
}

func TestRuntimeCLI(t *testing.T) {
	ctx := context.Background()
	t.Run("state and delete", func(t *testing.T) {
		cli, ran := newFakeCLI(t, "running")
		addState(t, cli, "c1")
		st, err := cli.State(ctx, "c1")
		if err != nil || st.Status != specs.StateRunning || st.Pid != 4242 {
			t.Fatalf("State = %+v, %v", st, err)
		}
		if err := cli.Delete(ctx, "c1", true); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := cli.KillCgroup(ctx, "/kubepods/pod1/pod1"); err != nil {
			t.Fatalf("KillCgroup: %v", err)
		}
		root := cli.Root
		want := []string{
			"runtime --root " + root + " state c1",
			"runtime --root " + root + " delete --force c1",
			"runtime --root " + root + " kill-cgroup /kubepods/pod1/pod1",
		}
		if got := ran(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("ran %q\nwant %q", got, want)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		cli, _ := newFakeCLI(t, "stopped")
		addState(t, cli, "c1")
		if st, err := cli.State(ctx, "c1"); err != nil || st.Status != specs.StateStopped || st.Pid != 0 {
			t.Fatalf("State = %+v, %v", st, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		// A state directory without state (a create that crashed).
		cli, _ := newFakeCLI(t, "notfound")
		addState(t, cli, "c1")
		_, err := cli.State(ctx, "c1")
		if !errdefs.IsNotFound(err) || strings.Count(err.Error(), "not found") != 1 {
			t.Errorf("State: %v, want one NotFound", err)
		}
		if err := cli.Delete(ctx, "c1", true); !errdefs.IsNotFound(err) {
			t.Errorf("Delete: %v, want NotFound", err)
		}
	})
	t.Run("failure", func(t *testing.T) {
		cli, _ := newFakeCLI(t, "fail")
		addState(t, cli, "c1")
		err := cli.Delete(ctx, "c1", true)
		if err == nil || errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "cgroup busy") {
			t.Errorf("Delete: %v, want the command's message, not NotFound", err)
		}
		if err := cli.KillCgroup(ctx, "/x"); err == nil || !strings.Contains(err.Error(), "cgroup busy") {
			t.Errorf("KillCgroup: %v", err)
		}
	})
}

// TestRuntimeCLIOCIArgs: for an OCI runtime the same calls run
// "<runtime> --root R ...", and its "does not exist" is NotFound.
func TestRuntimeCLIOCIArgs(t *testing.T) {
	cli := shim.RuntimeCLI{Binary: "/usr/sbin/runc", Root: "/run/skiff/runc", OCI: true}
	if got := strings.Join(cli.Args("delete", "--force", "c1"), " "); got != "--root /run/skiff/runc delete --force c1" {
		t.Errorf("OCI args %q", got)
	}
	ex := shim.RuntimeCLI{Binary: "/usr/bin/skiff-shim", Root: "/run/skiff/oci"}
	if got := strings.Join(ex.Args("state", "c1"), " "); got != "runtime --root /run/skiff/oci state c1" {
		t.Errorf("executor args %q", got)
	}
	if err := cli.KillCgroup(context.Background(), "/x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("KillCgroup on an OCI runtime: %v, want InvalidArgument", err)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "runc")
	script := "#!/bin/sh\necho 'container does not exist' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	fake := shim.RuntimeCLI{Binary: bin, Root: dir, OCI: true}
	if err := os.MkdirAll(filepath.Join(dir, "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.State(context.Background(), "c1"); !errdefs.IsNotFound(err) {
		t.Errorf("State of a container runc does not know: %v, want NotFound", err)
	}
}
