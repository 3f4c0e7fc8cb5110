package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/skiffcri/skiff/errdefs"
)

// RuntimeExitNotFound is the exit status of "skiff-shim runtime" when the
// container (or cgroup) it was asked about does not exist. Other failures
// exit with 1, usage errors with 2.
const RuntimeExitNotFound = 3

// defaultEnv is the environment of the processes skiffd starts from the
// shim binary: nothing of skiffd's own leaks into them.
func defaultEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}

// RuntimeCLI drives the executor through its own command line,
// "skiff-shim runtime --root Root ...", for what must happen to containers
// whose shim is gone: their processes killed, their executor state and
// cgroups removed, the pod init's cgroup killed. Each call runs the
// executor in a process of its own, so the caller never links it and the
// executor's state keeps one owner, the executor.
//
// With OCI set, Binary is an external OCI runtime CLI (runc, crun, runsc)
// and runs as "Binary --root Root ...": the same clean-up for the
// containers of a runtime handler that names one.
type RuntimeCLI struct {
	// Binary is the skiff-shim executable, or with OCI the OCI runtime's.
	Binary string
	// Root is the executor's state directory (the shims' --runtime-root).
	Root string
	// OCI marks Binary as an external OCI runtime CLI.
	OCI bool
	// Env is the command's environment; nil means a minimal PATH only.
	Env []string
}

// stateDir returns the executor's directory of container id,
// <Root>/<id>.
func (r RuntimeCLI) stateDir(id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.Contains(id, "/") {
		return "", errdefs.InvalidArgument("container id %q", id)
	}
	return filepath.Join(r.Root, id), nil
}

// HasState reports whether the executor keeps state for container id. It
// only looks for the state directory, so asking costs no process.
func (r RuntimeCLI) HasState(id string) (bool, error) {
	dir, err := r.stateDir(id)
	if err != nil {
		return false, err
	}
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("executor state of container %s: %w", id, err)
	}
	return true, nil
}

// State returns the executor's OCI state of container id ("runtime
// state"): its status and, unless it stopped, the init's pid. It wraps
// errdefs.ErrNotFound when the executor has no state for it.
func (r RuntimeCLI) State(ctx context.Context, id string) (specs.State, error) {
	var st specs.State
	if ok, err := r.HasState(id); err != nil {
		return st, err
	} else if !ok {
		return st, errdefs.NotFound("executor state of container %s", id)
	}
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("%s state %s: %w", r.name(), id, err)
	}
	return st, nil
}

// Delete removes container id's executor state and cgroup ("runtime
// delete"); with force it first kills whatever of the container still runs
// (freeze, SIGKILL of the cgroup) and waits for the init to exit. It wraps
// errdefs.ErrNotFound, without running anything, when the executor has no
// state for the container.
func (r RuntimeCLI) Delete(ctx context.Context, id string, force bool) error {
	if ok, err := r.HasState(id); err != nil {
		return err
	} else if !ok {
		return errdefs.NotFound("executor state of container %s", id)
	}
	args := []string{"delete", id}
	if force {
		args = []string{"delete", "--force", id}
	}
	_, err := r.run(ctx, args...)
	return err
}

// name is how errors name the command.
func (r RuntimeCLI) name() string {
	if r.OCI {
		return filepath.Base(r.Binary)
	}
	return "skiff-shim runtime"
}

// KillCgroup kills every process of the cgroup at path (a runtime-spec
// cgroupsPath) and removes the cgroup ("runtime kill-cgroup"); a cgroup that
// does not exist is not an error.
func (r RuntimeCLI) KillCgroup(ctx context.Context, path string) error {
	if r.OCI {
		return errdefs.InvalidArgument("kill-cgroup is the executor's command, not %s's", r.name())
	}
	_, err := r.run(ctx, "kill-cgroup", path)
	return err
}

// Features returns what the executor build supports ("runtime
// features", the runtime spec's features document).
func (r RuntimeCLI) Features(ctx context.Context) (features.Features, error) {
	var f features.Features
	out, err := r.run(ctx, "features")
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(out, &f); err != nil {
		return f, fmt.Errorf("%s features: %w", r.name(), err)
	}
	return f, nil
}

// Args returns the command line (after the binary) that runs args.
func (r RuntimeCLI) Args(args ...string) []string {
	if r.OCI {
		return append([]string{"--root", r.Root}, args...)
	}
	return append([]string{"runtime", "--root", r.Root}, args...)
}

// run runs "skiff-shim runtime --root Root args..." (or with OCI "Binary
// --root Root args...") and returns its standard output.
func (r RuntimeCLI) run(ctx context.Context, args ...string) ([]byte, error) {
	if r.Binary == "" || r.Root == "" {
		return nil, errdefs.InvalidArgument("the runtime's CLI needs Binary and Root")
	}
	cmd := exec.CommandContext(ctx, r.Binary, r.Args(args...)...)
	cmd.Env = r.Env
	if cmd.Env == nil {
		cmd.Env = defaultEnv()
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s %s: %w", r.name(), strings.Join(args, " "), ctx.Err())
	}
	msg := strings.TrimSpace(stderr.String())
	var ee *exec.ExitError
	if r.OCI {
		// OCI runtimes have no exit status of their own for "no such
		// container"; runc and crun say it in words.
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "not exist") {
			return nil, fmt.Errorf("%s %s: %s: %w", r.name(), strings.Join(args, " "), msg, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", r.name(), strings.Join(args, " "), err, msg)
	}
	if errors.As(err, &ee) && ee.ExitCode() == RuntimeExitNotFound {
		// The command's message names the command and ends with the kind.
		msg = strings.TrimSuffix(msg, ": "+errdefs.ErrNotFound.Error())
		if msg == "" {
			msg = "skiff-shim runtime " + strings.Join(args, " ")
		}
		return nil, fmt.Errorf("%s: %w", msg, errdefs.ErrNotFound)
	}
	return nil, fmt.Errorf("skiff-shim runtime %s: %w: %s", strings.Join(args, " "), err, msg)
}
