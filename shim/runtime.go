package shim

import (
	"context"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Stdio holds the child ends of a process's standard streams. A nil file
// means /dev/null. The shim keeps the other ends and closes these after the
// Runtime call returns.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// Runtime creates and controls containers for the shim. The production
// implementation is the oci executor; tests use host processes.
//
// Every process a Runtime starts must be a child (or, through the shim's
// subreaper status, a descendant) of the shim, and the Runtime must never
// wait for it: the shim reaps all children itself and calls Create and Exec
// with reaping paused, so helper processes a Runtime starts and waits for
// inside a call are not stolen.
type Runtime interface {
	// Create sets up container id from spec with the mounted rootfs and
	// leaves its init blocked at the start barrier. It returns the pid of
	// the process that becomes the container's main process.
	Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, stdio Stdio) (pid int, err error)
	// Start releases the start barrier so the init execs the user process.
	Start(ctx context.Context, id string) error
	// Kill signals the init, or with all every process of the container.
	Kill(ctx context.Context, id string, sig unix.Signal, all bool) error
	// Delete releases what Create set up (cgroup, state). The container's
	// processes have exited or been killed.
	Delete(ctx context.Context, id string) error
	// Exec starts p inside the running container id and returns its pid.
	Exec(ctx context.Context, id string, p *specs.Process, stdio Stdio) (pid int, err error)
}

// OOMChecker is implemented by Runtimes that can tell whether the kernel's
// OOM killer killed a process of the container (from its memory cgroup).
type OOMChecker interface {
	OOMKilled(ctx context.Context, id string) (bool, error)
}
