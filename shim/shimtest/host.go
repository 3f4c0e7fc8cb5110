// Package shimtest provides a daemon.Runtime that runs plain host processes,
// without namespaces, cgroups or a rootfs, for testing the shim's process,
// stdio and exit handling apart from the executor. It is not a container
// runtime and must not be used outside tests.
package shimtest

import (
	"context"
	"os"
	"sync"
	"syscall"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim/daemon"
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
	res     *specs.LinuxResources
}

var _ daemon.Runtime = (*HostRuntime)(nil)

// NewHostRuntime returns an empty HostRuntime.
func NewHostRuntime() *HostRuntime { return &HostRuntime{procs: make(map[string]*hostProc)} }

func files(stdio daemon.Stdio) ([]*os.File, func(), error) {
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

// hostProcess is a started host process; it implements daemon.Process.
type hostProcess struct {
	proc    *os.Process
	console *os.File
}

func (h *hostProcess) Pid() int          { return h.proc.Pid }
func (h *hostProcess) Console() *os.File { return h.console }
func (h *hostProcess) Wait() (daemon.ExitStatus, error) {
	st, err := h.proc.Wait()
	if err != nil {
		return daemon.ExitStatus{}, err
	}
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return daemon.ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}, nil
	}
	return daemon.ExitStatus{Code: ws.ExitStatus()}, nil
}

func start(p *specs.Process, argv []string, extra *os.File, stdio daemon.Stdio) (*hostProcess, error) {
	var console *os.File
	if p.Terminal {
		master, slave, err := pty.Open()
		if err != nil {
			return nil, err
		}
		defer slave.Close()
		if sz := p.ConsoleSize; sz != nil {
			if err := pty.Setsize(master, &pty.Winsize{Rows: uint16(sz.Height), Cols: uint16(sz.Width)}); err != nil {
				master.Close()
				return nil, err
			}
		}
		console = master
		stdio = daemon.Stdio{Stdin: slave, Stdout: slave, Stderr: slave}
	}
	fs, done, err := files(stdio)
	if err != nil {
		return nil, err
	}
	defer done()
	if extra != nil {
		fs = append(fs, extra)
	}
	dir := p.Cwd
	if dir == "" {
		dir = "/"
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if console != nil {
		sys = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Dir:   dir,
		Env:   p.Env,
		Files: fs,
		Sys:   sys,
	})
	if err != nil {
		if console != nil {
			console.Close()
		}
		return nil, err
	}
	return &hostProcess{proc: proc, console: console}, nil
}

// Create implements daemon.Runtime; rootfs is ignored.
func (h *HostRuntime) Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, stdio daemon.Stdio) (daemon.Process, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.procs[id]; ok {
		return nil, errdefs.AlreadyExists("host container %q", id)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	argv := append([]string{"/bin/sh", "-c", barrierScript, "sh"}, spec.Process.Args...)
	p, err := start(spec.Process, argv, r, stdio)
	if err != nil {
		w.Close()
		return nil, err
	}
	h.procs[id] = &hostProc{pid: p.Pid(), barrier: w}
	return p, nil
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

// Start implements daemon.Runtime.
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

// Kill implements daemon.Runtime; all signals the process group.
func (h *HostRuntime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
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

// Delete implements daemon.Runtime.
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

// Exec implements daemon.Runtime.
func (h *HostRuntime) Exec(ctx context.Context, id string, proc *specs.Process, stdio daemon.Stdio) (daemon.Process, error) {
	if _, err := h.get(id); err != nil {
		return nil, err
	}
	argv := proc.Args
	if len(argv) == 0 {
		return nil, errdefs.InvalidArgument("exec without args")
	}
	path := argv[0]
	if lp, err := lookPath(path, proc.Env); err == nil {
		path = lp
	}
	p, err := start(proc, append([]string{path}, argv[1:]...), nil, stdio)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Update implements daemon.Runtime: host processes have no cgroup, so the
// resources are only kept, for Resources.
func (h *HostRuntime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.procs[id]
	if !ok {
		return errdefs.NotFound("host container %q", id)
	}
	p.res = res
	return nil
}

// Resources returns the resources the last Update of container id set,
// nil when none did.
func (h *HostRuntime) Resources(id string) *specs.LinuxResources {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.procs[id]; ok {
		return p.res
	}
	return nil
}
