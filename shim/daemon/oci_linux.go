package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/oci"
)

// Main is the body of "skiff-shim daemon": the shim with the built-in oci
// executor, or with the OCI runtime CLI --runtime-binary. args are the
// arguments after "daemon"; it returns the process exit code. The executor
// keeps its per-container state under --runtime-root (default
// <dir>/runtime) and re-executes this binary as "skiff-shim init" for each
// container; an OCI runtime gets --runtime-root as its --root and the
// containers' bundles under <dir>/bundles.
func Main(args []string) int {
	return MainWithRuntime(args, func(f Flags) (Runtime, error) {
		if f.RuntimeBinary != "" {
			if err := os.MkdirAll(f.RuntimeRoot, 0o700); err != nil {
				return nil, fmt.Errorf("runtime root: %w", err)
			}
			return NewCLIRuntime(f.RuntimeBinary, f.RuntimeRoot, filepath.Join(f.Dir, "bundles")), nil
		}
		root := f.RuntimeRoot
		if root == "" {
			root = filepath.Join(f.Dir, "runtime")
		}
		return NewOCIRuntime(&oci.Executor{StateDir: root, NewCgroup: oci.NewCgroupfs()}), nil
	})
}

// OCIRuntime adapts the oci executor to Runtime.
type OCIRuntime struct {
	e *oci.Executor
	// containerCgroups gives OOMKilled, JoinPodCgroup and RemovePodCgroup.
	containerCgroups
}

// NewOCIRuntime returns a Runtime backed by e.
func NewOCIRuntime(e *oci.Executor) *OCIRuntime {
	return &OCIRuntime{e: e}
}

type ociProcess struct {
	pid     int
	child   int // the process Wait waits for, when not pid
	console *os.File
	wait    func() (oci.ExitStatus, error)
}

func (p *ociProcess) Pid() int          { return p.pid }
func (p *ociProcess) ChildPid() int     { return p.child }
func (p *ociProcess) Console() *os.File { return p.console }
func (p *ociProcess) Wait() (ExitStatus, error) {
	es, err := p.wait()
	if err != nil {
		return ExitStatus{}, err
	}
	return ExitStatus{Code: es.Code, Signal: es.Signal}, nil
}

func ociIO(s Stdio) oci.IO { return oci.IO{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr} }

// Create implements Runtime.
func (r *OCIRuntime) Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, stdio Stdio) (Process, error) {
	c, err := r.e.Create(ctx, id, oci.Bundle{Spec: spec, Rootfs: rootfs}, ociIO(stdio))
	if err != nil {
		return nil, err
	}
	if spec.Linux != nil {
		r.remember(id, spec.Linux.CgroupsPath)
	}
	return &ociProcess{pid: c.Pid, child: c.ChildPid(), console: c.Console, wait: c.Wait}, nil
}

// Start implements Runtime.
func (r *OCIRuntime) Start(ctx context.Context, id string) error { return r.e.Start(ctx, id) }

// Kill implements Runtime.
func (r *OCIRuntime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	return r.e.Kill(ctx, id, sig, all)
}

// Delete implements Runtime. The shim only deletes containers whose init
// has exited or that never started, so force only kills leftovers.
func (r *OCIRuntime) Delete(ctx context.Context, id string) error {
	if err := r.e.Delete(ctx, id, true); err != nil {
		return err
	}
	r.forget(id)
	return nil
}

// Exec implements Runtime.
func (r *OCIRuntime) Exec(ctx context.Context, id string, p *specs.Process, stdio Stdio) (Process, error) {
	proc, err := r.e.Exec(ctx, id, p, ociIO(stdio))
	if err != nil {
		return nil, err
	}
	return &ociProcess{pid: proc.Pid, child: proc.Pid, console: proc.Console, wait: proc.Wait}, nil
}

// Update implements Runtime: the executor sets the limits on the
// container's cgroup.
func (r *OCIRuntime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	return r.e.Update(ctx, id, res)
}
