package oci

import (
	"context"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CgroupManager is what the executor needs from a cgroup implementation
// (package oci/cgroups provides one for v1, v2 and hybrid hosts). It is
// defined here, where it is consumed.
type CgroupManager interface {
	// Apply moves pid into the cgroup (every hierarchy on v1).
	Apply(pid int) error
	// Set applies resource limits.
	Set(res *specs.LinuxResources) error
	// Pids lists the processes in the cgroup.
	Pids() ([]int, error)
	// KillAll signals every process in the cgroup without letting any
	// escape by forking (freeze, or cgroup.kill).
	KillAll(ctx context.Context, sig unix.Signal) error
	// Destroy removes the cgroup once its processes are gone, retrying
	// until ctx ends; a missing cgroup is not an error.
	Destroy(ctx context.Context) error
}

// cgroupJoiner is a CgroupManager that a process can join in parts, which
// spares the kernel the migration lock of a cgroup.procs write (see
// launch.start and cgroupBarrier): cloned into its cgroup2 directory, and
// moving its own thread into the v1 hierarchies.
type cgroupJoiner interface {
	// OpenCloneTarget opens the cgroup2 directory to clone into; nil
	// when there is none.
	OpenCloneTarget() (*os.File, error)
	// OpenTaskFiles opens the v1 hierarchies' files a thread moves itself
	// with, by writing "0"; none on a cgroup v2 host.
	OpenTaskFiles() ([]*os.File, error)
	// ApplyV1 and ApplyUnified move a process into the v1 hierarchies or
	// the cgroup2 directory only.
	ApplyV1(pid int) error
	ApplyUnified(pid int) error
}

// CgroupFactory opens the cgroup at path, the runtime-spec's
// linux.cgroupsPath. With res it creates the cgroup and applies the limits
// (before any process joins: v1 cpusets must be set first); with nil res it
// reopens an existing container's cgroup (Kill, Delete, Exec from another
// process) and returns an error wrapping errdefs.ErrNotFound if it is gone.
type CgroupFactory func(path string, res *specs.LinuxResources) (CgroupManager, error)

// SeccompPreparer compiles a seccomp profile and returns the function that
// installs it on the calling thread (no TSYNC). The init compiles before
// the start barrier, so a bad profile fails Create, and installs last, just
// before execve, on its locked thread.
type SeccompPreparer func(s *specs.LinuxSeccomp) (install func() error, err error)

// Bundle names what to run: the spec and the rootfs, already mounted by
// the caller (Skiff mounts the overlay itself).
type Bundle struct {
	// Path is the OCI bundle directory reported in the state; may be "".
	Path string
	// Spec is the runtime spec; Spec.Process and Spec.Linux must be set.
	Spec *specs.Spec
	// Rootfs is the mounted rootfs. If empty, Spec.Root.Path is used,
	// relative to Path when not absolute.
	Rootfs string
}

// IO is the stdio of a container's init or of an exec'd process. Nil
// files are connected to /dev/null. When the process asks for a terminal
// (Process.Terminal) these are ignored: a pty is allocated inside the
// container's devpts instance and its master is returned as Console.
type IO struct {
	Stdin, Stdout, Stderr *os.File
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when the process was killed.
	Code int
	// Signal is the terminating signal, 0 when the process exited.
	Signal syscall.Signal
	// CoreDumped is set when the signal produced a core dump.
	CoreDumped bool
}

// Status values of State.Status.
const (
	StatusCreated = specs.StateCreated
	StatusRunning = specs.StateRunning
	StatusStopped = specs.StateStopped
)
