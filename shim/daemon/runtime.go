package daemon

import (
	"context"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Stdio holds the child ends of a process's standard streams. A nil file
// means /dev/null. The shim keeps the other ends and closes these after the
// Runtime call returns. For a process with a terminal they are nil: the
// Runtime allocates the terminal and returns its master as the console.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when a signal killed it.
	Code int
	// Signal is the terminating signal, 0 when the process exited.
	Signal syscall.Signal
}

// Process is a process a Runtime started: a container's init or an exec.
type Process interface {
	Pid() int
	// Console is the terminal master when the process has a terminal,
	// else nil. The shim owns and closes it.
	Console() *os.File
	// Wait blocks until the process has exited and reaps it. The shim
	// calls it exactly once.
	Wait() (ExitStatus, error)
}

// Runtime creates and controls containers for the shim. The production
// implementation is the oci executor; tests use host processes.
//
// The processes a Runtime starts are children of the shim, which waits for
// them through Process.Wait. The shim also reaps every other child (it is a
// child subreaper, so orphans of the pod land on it) but never one it got
// as a Process, and it pauses that reaping during Create and Exec so that
// helper processes a Runtime starts and waits for inside a call are safe.
type Runtime interface {
	// Create sets up container id from spec with the mounted rootfs (empty
	// means spec.Root.Path) and leaves its init blocked at the start
	// barrier.
	Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, stdio Stdio) (Process, error)
	// Start releases the start barrier so the init execs the user process.
	Start(ctx context.Context, id string) error
	// Kill signals the init, or with all every process of the container.
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	// Delete releases what Create set up (cgroup, state), killing what is
	// left of the container.
	Delete(ctx context.Context, id string) error
	// Exec starts p inside the running container id.
	Exec(ctx context.Context, id string, p *specs.Process, stdio Stdio) (Process, error)
	// Update applies new resource limits to container id (its cgroup);
	// fields res leaves nil keep their value.
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
}

// OOMChecker is implemented by Runtimes that can tell whether the kernel's
// OOM killer killed a process of the container (from its memory cgroup).
// The shim asks after the container's init exited, before Delete.
type OOMChecker interface {
	OOMKilled(ctx context.Context, id string) (bool, error)
}

// PodCgroups is implemented by Runtimes that can place the pod init in the
// pod's cgroup, as the pause container of other runtimes is, and remove that
// cgroup once the init is gone.
type PodCgroups interface {
	JoinPodCgroup(path string, pid int) error
	RemovePodCgroup(ctx context.Context, path string) error
}
