// Package shimtest provides a shim.Runtime that runs plain host processes,
// without namespaces, cgroups or a rootfs, for testing the shim's process,
// stdio and exit handling apart from the executor. It is not a container
// runtime and must not be used outside tests.
package shimtest

import (
	"context"
	"os"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
)

// barrierScript blocks on fd 3 until Start writes to it, then execs the
// process arguments: the same created/started split the executor has.
const barrierScript = `read _ <&3; exec 3<&-; exec "$@"`

// HostRuntime runs each container as a host process group.
type HostRuntime struct {
	mu    sync.Mutex
	procs map[string]*hostProc
}

type hostProc struct {
	pid     int
	barrier *os.File
}

var _ shim.Runtime = (*HostRuntime)(nil)

// NewHostRuntime returns an empty HostRuntime.
func NewHostRuntime() *HostRuntime { return &HostRuntime{procs: make(map[string]*hostProc)} }

func files(stdio shim.Stdio) ([]*os.File, func(), error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	fs := []*os.File{stdio.Stdin, stdio.Stdout, stdio.Stderr}
	for i, f := range fs {
		if f == nil {
			fs[i] = null
		}
	}
	return fs, func() { null.Close() }, nil
}

func start(p *specs.Process, argv []string, extra *os.File, stdio shim.Stdio) (int, error) {
	fs, done, err := files(stdio)
	if err != nil {
		return 0, err
	}
	defer done()
	if extra != nil {
		fs = append(fs, extra)
	}
	dir := p.Cwd
	if dir == "" {
		dir = "/"
	}
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Dir:   dir,
		Env:   p.Env,
		Files: fs,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return 0, err
	}
	pid := proc.Pid
	// The shim reaps; the handle is not needed.
	proc.Release()
	return pid, nil
}

// Create implements shim.Runtime; rootfs is ignored.
func (h *HostRuntime) Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, stdio shim.Stdio) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.procs[id]; ok {
		return 0, errdefs.AlreadyExists("host container %q", id)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	argv := append([]string{"/bin/sh", "-c", barrierScript, "sh"}, spec.Process.Args...)
	pid, err := start(spec.Process, argv, r, stdio)
	if err != nil {
		w.Close()
		return 0, err
	}
	h.procs[id] = &hostProc{pid: pid, barrier: w}
	return pid, nil
}

func (h *HostRuntime) get(id string) (*hostProc, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.procs[id]
	if !ok {
		return nil, errdefs.NotFound("host container %q", id)
	}
	return p, nil
}

// Start implements shim.Runtime.
func (h *HostRuntime) Start(ctx context.Context, id string) error {
	p, err := h.get(id)
	if err != nil {
		return err
	}
	if p.barrier == nil {
		return errdefs.FailedPrecondition("host container %q already started", id)
	}
	_, err = p.barrier.Write([]byte("\n"))
	p.barrier.Close()
	p.barrier = nil
	return err
}

// Kill implements shim.Runtime; all signals the process group.
func (h *HostRuntime) Kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	p, err := h.get(id)
	if err != nil {
		return err
	}
	target := p.pid
	if all {
		target = -p.pid
	}
	if err := unix.Kill(target, sig); err != nil {
		return &os.SyscallError{Syscall: "kill", Err: err}
	}
	return nil
}

// Delete implements shim.Runtime.
func (h *HostRuntime) Delete(ctx context.Context, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.procs[id]
	if !ok {
		return errdefs.NotFound("host container %q", id)
	}
	if p.barrier != nil {
		p.barrier.Close()
	}
	delete(h.procs, id)
	return nil
}

// Exec implements shim.Runtime.
func (h *HostRuntime) Exec(ctx context.Context, id string, proc *specs.Process, stdio shim.Stdio) (int, error) {
	if _, err := h.get(id); err != nil {
		return 0, err
	}
	argv := proc.Args
	if len(argv) == 0 {
		return 0, errdefs.InvalidArgument("exec without args")
	}
	path := argv[0]
	if lp, err := lookPath(path, proc.Env); err == nil {
		path = lp
	}
	return start(proc, append([]string{path}, argv[1:]...), nil, stdio)
}
