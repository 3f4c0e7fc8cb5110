package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/sysctl"
)

// Executor creates and manages containers. The zero value is not usable:
// StateDir is required.
type Executor struct {
	// StateDir holds one directory per container (state.json, config.json,
	// exec.fifo), e.g. /run/skiff/containers.
	StateDir string
	// InitPath is the skiff-shim binary run as "skiff-shim init";
	// default /proc/self/exe.
	InitPath string
	// NewCgroup opens a container's cgroup; nil runs containers without
	// cgroup placement or limits.
	NewCgroup CgroupFactory
	// Logger receives warnings (e.g. a clamped oom_score_adj); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Container is a container this process created (and therefore may wait
// for).
type Container struct {
	ID  string
	Pid int
	// Console is the pty master when the process has a terminal.
	Console *os.File
	cmd     *exec.Cmd
}

// Wait waits for the container's init (after Start, the user process) to
// exit. Only the process that called Create can wait.
func (c *Container) Wait() (ExitStatus, error) { return waitCmd(c.cmd) }

// Process is a process started by Exec.
type Process struct {
	Pid int
	// Console is the pty master when the process has a terminal.
	Console *os.File
	cmd     *exec.Cmd
}

// Wait waits for the exec'd process to exit.
func (p *Process) Wait() (ExitStatus, error) { return waitCmd(p.cmd) }

// Resize sets the terminal size of a process that has a terminal.
func (p *Process) Resize(width, height uint16) error { return resize(p.Console, width, height) }

// Resize sets the terminal size of a container that has a terminal.
func (c *Container) Resize(width, height uint16) error { return resize(c.Console, width, height) }

func resize(console *os.File, width, height uint16) error {
	if console == nil {
		return errdefs.FailedPrecondition("process has no terminal")
	}
	ws := &unix.Winsize{Col: width, Row: height}
	if err := unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}

func waitCmd(cmd *exec.Cmd) (ExitStatus, error) {
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitStatus{}, err
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{}, errors.New("no wait status")
	}
	return exitStatus(ws), nil
}

func exitStatus(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal(), CoreDumped: ws.CoreDump()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

func (e *Executor) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

func (e *Executor) initPath() string {
	if e.InitPath != "" {
		return e.InitPath
	}
	return "/proc/self/exe"
}

func (e *Executor) dir(id string) (string, error) {
	if !validID(id) {
		return "", errdefs.InvalidArgument("container id %q", id)
	}
	return filepath.Join(e.StateDir, id), nil
}

// nsFlags maps runtime-spec namespace types to clone flags.
var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// nsPlan is how the init gets its namespaces: cloneFlags are new at clone
// time, join are setns'd by the parent's cloning thread.
type nsPlan struct {
	cloneFlags uintptr
	join       []nsJoin
	newCgroup  bool
	newUTS     bool
	newNet     bool
	newIPC     bool
	joinPid    bool
}

type nsJoin struct {
	typ  int
	path string
	fd   *os.File
}

func planNamespaces(l *specs.Linux) (nsPlan, error) {
	var p nsPlan
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		flag, ok := nsFlags[ns.Type]
		if !ok {
			return p, errdefs.InvalidArgument("unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return p, errdefs.InvalidArgument("namespace %q given twice", ns.Type)
		}
		seen[ns.Type] = true
		switch ns.Type {
		case specs.UserNamespace, specs.TimeNamespace:
			// Joining or creating a user namespace needs a single-threaded
			// caller (a cgo pre-runtime stage); not built.
			return p, errdefs.Unimplemented("%s namespace", ns.Type)
		case specs.MountNamespace:
			if ns.Path != "" {
				return p, errdefs.Unimplemented("joining a mount namespace for a new container")
			}
		}
		if ns.Path != "" {
			p.join = append(p.join, nsJoin{typ: flag, path: ns.Path})
			if ns.Type == specs.PIDNamespace {
				p.joinPid = true
			}
			continue
		}
		switch ns.Type {
		case specs.CgroupNamespace:
			p.newCgroup = true // unshared by the init once it is in its cgroup
			continue
		case specs.UTSNamespace:
			p.newUTS = true
		case specs.NetworkNamespace:
			p.newNet = true
		case specs.IPCNamespace:
			p.newIPC = true
		}
		p.cloneFlags |= uintptr(flag)
	}
	if !seen[specs.MountNamespace] {
		return p, errdefs.InvalidArgument("spec without a mount namespace")
	}
	return p, nil
}

// validateSysctls accepts only sysctls that are namespaced (package
// sysctl's rule) and whose namespace is not the host's.
func validateSysctls(sysctls map[string]string, l *specs.Linux) error {
	has := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		has[ns.Type] = true
	}
	for k := range sysctls {
		kind, err := sysctl.Classify(k)
		if err != nil {
			return err
		}
		need := map[sysctl.Namespace]specs.LinuxNamespaceType{
			sysctl.Net: specs.NetworkNamespace, sysctl.IPC: specs.IPCNamespace, sysctl.UTS: specs.UTSNamespace,
		}[kind]
		if !has[need] {
			return errdefs.InvalidArgument("sysctl %q needs a %s namespace that is not the host's", k, need)
		}
	}
	return nil
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func validateProcess(p *specs.Process) error {
	if p == nil {
		return errdefs.InvalidArgument("spec without process")
	}
	if len(p.Args) == 0 {
		return errdefs.InvalidArgument("process without args")
	}
	for _, r := range p.Rlimits {
		if _, ok := rlimitNames[r.Type]; !ok {
			return errdefs.InvalidArgument("unknown rlimit %q", r.Type)
		}
	}
	if p.Capabilities != nil {
		last, err := capability.LastCap()
		if err != nil {
			return fmt.Errorf("read last capability: %w", err)
		}
		if _, err := parseCaps(p.Capabilities, last); err != nil {
			return err
		}
	}
	return nil
}

// setProcessLimits applies rlimits with prlimit and oom_score_adj from the
// parent, before the process runs user code. Setting rlimits here (not in
// the Go init) keeps the Go runtime's NOFILE bookkeeping out of the way.
// A lower oom_score_adj than the current one needs CAP_SYS_RESOURCE; when
// the kernel refuses, the current value is kept and a warning logged.
func (e *Executor) setProcessLimits(pid int, p *specs.Process) error {
	for _, r := range p.Rlimits {
		lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(pid, rlimitNames[r.Type], &lim, nil); err != nil {
			return fmt.Errorf("prlimit %s=%d:%d on pid %d: %w", r.Type, r.Soft, r.Hard, pid, err)
		}
	}
	if p.OOMScoreAdj == nil {
		return nil
	}
	path := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	want := *p.OOMScoreAdj
	err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		b, rerr := os.ReadFile(path)
		cur, cerr := strconv.Atoi(strings.TrimSpace(string(b)))
		if rerr == nil && cerr == nil && want < cur {
			e.logger().Warn("oom_score_adj below the current value refused; keeping current",
				"pid", pid, "requested", want, "current", cur)
			return nil
		}
	}
	return fmt.Errorf("set oom_score_adj %d: %w", want, err)
}

// startInit starts cmd after joining the namespaces in join. Joining
// happens on a locked OS thread that os/exec then clones from, so the child
// inherits that thread's namespaces (setns on a pid namespace only affects
// children, which is exactly what we want). The thread is never unlocked:
// the goroutine exits locked and the Go runtime terminates the tainted
// thread instead of reusing it.
func startInit(cmd *exec.Cmd, join []nsJoin) error {
	if len(join) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, j := range join {
			if err := unix.Setns(int(j.fd.Fd()), j.typ); err != nil {
				errc <- &os.PathError{Op: "setns", Path: j.path, Err: err}
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func openJoins(join []nsJoin) error {
	for i := range join {
		f, err := os.Open(join[i].path)
		if err != nil {
			return fmt.Errorf("open namespace: %w", err)
		}
		join[i].fd = f
	}
	return nil
}

func closeJoins(join []nsJoin) {
	for _, j := range join {
		if j.fd != nil {
			j.fd.Close()
		}
	}
}

// launch holds the plumbing shared by Create and Exec.
type launch struct {
	cmd        *exec.Cmd
	cfgW       *os.File
	sync       *net.UnixConn
	childFiles []*os.File
}

func (e *Executor) newLaunch(stdio IO, terminal bool, extra ...*os.File) (*launch, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "init-sync")
	child := os.NewFile(uintptr(fds[1]), "init-sync-child")
	conn, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		child.Close()
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	l := &launch{cfgW: cfgW, sync: conn.(*net.UnixConn), childFiles: []*os.File{cfgR, child}}
	files := append([]*os.File{cfgR, child}, extra...)
	env := []string{envConfigFD + "=3", envSyncFD + "=4"}
	cmd := &exec.Cmd{
		Path:        e.initPath(),
		Args:        []string{"skiff-shim", "init"},
		ExtraFiles:  files,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if !terminal {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
		// os/exec turns a nil *os.File stored in an interface into a
		// non-nil interface; keep nil meaning /dev/null.
		if stdio.Stdin == nil {
			cmd.Stdin = nil
		}
		if stdio.Stdout == nil {
			cmd.Stdout = nil
		}
		if stdio.Stderr == nil {
			cmd.Stderr = nil
		}
	}
	cmd.Env = env
	l.cmd = cmd
	return l, nil
}

func (l *launch) addEnvFD(name string, fdIndex int) {
	l.cmd.Env = append(l.cmd.Env, name+"="+strconv.Itoa(3+fdIndex))
}

func (l *launch) closeChildFiles() {
	for _, f := range l.childFiles {
		f.Close()
	}
	l.childFiles = nil
}

func (l *launch) close() {
	l.closeChildFiles()
	l.cfgW.Close()
	l.sync.Close()
}

// sendConfig writes the init's configuration and closes the pipe.
func (l *launch) sendConfig(cfg *initConfig) error {
	err := json.NewEncoder(l.cfgW).Encode(cfg)
	l.cfgW.Close()
	if err != nil {
		return fmt.Errorf("send init config: %w", err)
	}
	return nil
}

// await reads the init's messages until "ready" (create) or until the
// socket closes on execve (exec). It returns the pty master if one came.
func (l *launch) await(ctx context.Context, untilReady bool) (*os.File, error) {
	stop := context.AfterFunc(ctx, func() { l.sync.SetReadDeadline(time.Now()) })
	defer stop()
	var console *os.File
	fail := func(err error) (*os.File, error) {
		if console != nil {
			console.Close()
		}
		return nil, err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := l.sync.ReadMsgUnix(buf, oob)
		if errors.Is(err, io.EOF) {
			n, err = 0, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			return fail(fmt.Errorf("read from init: %w", err))
		}
		if n == 0 {
			if untilReady {
				return fail(errors.New("init exited during set-up"))
			}
			return console, nil
		}
		var m syncMsg
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			return fail(fmt.Errorf("bad message from init: %w", err))
		}
		switch m.Type {
		case msgError:
			return fail(errors.New(m.Error))
		case msgReady:
			return console, nil
		case msgPty:
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 {
				return fail(fmt.Errorf("pty message without fd: %v", err))
			}
			fds, err := unix.ParseUnixRights(&msgs[0])
			if err != nil || len(fds) != 1 {
				return fail(fmt.Errorf("pty message without fd: %v", err))
			}
			console = os.NewFile(uintptr(fds[0]), "pty-master")
		default:
			return fail(fmt.Errorf("unknown message %q from init", m.Type))
		}
	}
}

// Create creates container id: its init runs in all its namespaces and
// its cgroup, with the rootfs pivoted and the process's credentials set,
// blocked at the start barrier until Start.
func (e *Executor) Create(ctx context.Context, id string, b Bundle, stdio IO) (c *Container, retErr error) {
	dir, err := e.dir(id)
	if err != nil {
		return nil, err
	}
	spec := b.Spec
	if spec == nil || spec.Linux == nil {
		return nil, errdefs.InvalidArgument("container %q: spec without linux section", id)
	}
	if err := validateProcess(spec.Process); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if err := validateSysctls(spec.Linux.Sysctl, spec.Linux); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	plan, err := planNamespaces(spec.Linux)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	//lint:ignore SA1019 a spec that still uses Prestart hooks must be refused too
	if h := spec.Hooks; h != nil && len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer)+
		len(h.StartContainer)+len(h.Poststart)+len(h.Poststop) > 0 {
		return nil, errdefs.Unimplemented("container %q: OCI hooks", id)
	}
	rootfs := b.Rootfs
	if rootfs == "" {
		if spec.Root == nil || spec.Root.Path == "" {
			return nil, errdefs.InvalidArgument("container %q: no rootfs", id)
		}
		rootfs = spec.Root.Path
		if !filepath.IsAbs(rootfs) {
			rootfs = filepath.Join(b.Path, rootfs)
		}
	}
	if err := os.MkdirAll(e.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		if os.IsExist(err) {
			return nil, errdefs.AlreadyExists("container %q", id)
		}
		return nil, fmt.Errorf("create state dir of %q: %w", id, err)
	}
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			os.RemoveAll(dir)
		}
	}()
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), specJSON, 0o600); err != nil {
		return nil, err
	}
	fifoPath := filepath.Join(dir, fifoName)
	if err := unix.Mkfifo(fifoPath, 0o600); err != nil {
		return nil, &os.PathError{Op: "mkfifo", Path: fifoPath, Err: err}
	}
	fifo, err := os.OpenFile(fifoPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer fifo.Close()

	if err := openJoins(plan.join); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	defer closeJoins(plan.join)

	l, err := e.newLaunch(stdio, spec.Process.Terminal, fifo)
	if err != nil {
		return nil, err
	}
	defer l.close()
	l.addEnvFD(envFifoFD, 2)
	l.cmd.SysProcAttr.Cloneflags = plan.cloneFlags
	if err := startInit(l.cmd, plan.join); err != nil {
		return nil, fmt.Errorf("start init of container %q: %w", id, err)
	}
	l.closeChildFiles()
	fifo.Close()
	pid := l.cmd.Process.Pid
	undo = append(undo, func() {
		l.cmd.Process.Kill()
		l.cmd.Wait()
	})

	if e.NewCgroup != nil && spec.Linux.CgroupsPath != "" {
		res := spec.Linux.Resources
		if res == nil {
			res = &specs.LinuxResources{} // non-nil: create, not reopen
		}
		cg, err := e.NewCgroup(spec.Linux.CgroupsPath, res)
		if err != nil {
			return nil, fmt.Errorf("container %q: cgroup: %w", id, err)
		}
		undo = append(undo, func() {
			// The caller's ctx may be cancelled; undo with a detached one.
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cg.Destroy(dctx)
		})
		if err := cg.Apply(pid); err != nil {
			return nil, fmt.Errorf("container %q: join cgroup: %w", id, err)
		}
	}
	if err := e.setProcessLimits(pid, spec.Process); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	cfg := &initConfig{
		Spec:        spec,
		Process:     spec.Process,
		Rootfs:      rootfs,
		NewMountNS:  plan.cloneFlags&unix.CLONE_NEWNS != 0,
		NewUTSNS:    plan.newUTS,
		NewCgroupNS: plan.newCgroup,
		NewNetNS:    plan.newNet,
	}
	if err := l.sendConfig(cfg); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	console, err := l.await(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", id, err)
	}
	start, _, err := procStartTime(pid)
	if err != nil {
		if console != nil {
			console.Close()
		}
		return nil, fmt.Errorf("container %q: read init start time: %w", id, err)
	}
	st := &State{
		State: specs.State{
			Version:     specs.Version,
			ID:          id,
			Status:      StatusCreated,
			Pid:         pid,
			Bundle:      b.Path,
			Annotations: spec.Annotations,
		},
		Created:       time.Now().UTC(),
		InitStartTime: start,
		Rootfs:        rootfs,
		CgroupsPath:   spec.Linux.CgroupsPath,
		SharedPidNS:   plan.joinPid,
	}
	if err := writeState(dir, st); err != nil {
		if console != nil {
			console.Close()
		}
		return nil, fmt.Errorf("container %q: write state: %w", id, err)
	}
	return &Container{ID: id, Pid: pid, Console: console, cmd: l.cmd}, nil
}

// Start releases a created container's init from the start barrier; it
// then execs the user process.
func (e *Executor) Start(ctx context.Context, id string) error {
	dir, err := e.dir(id)
	if err != nil {
		return err
	}
	st, err := readState(dir, id)
	if err != nil {
		return err
	}
	fifoPath := filepath.Join(dir, fifoName)
	fd, err := unix.Open(fifoPath, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return errdefs.FailedPrecondition("container %q already started", id)
		case errors.Is(err, unix.ENXIO):
			return errdefs.FailedPrecondition("container %q: init (pid %d) is gone", id, st.Pid)
		}
		return &os.PathError{Op: "open", Path: fifoPath, Err: err}
	}
	defer unix.Close(fd)
	if !initAlive(st) {
		return errdefs.FailedPrecondition("container %q: init (pid %d) is gone", id, st.Pid)
	}
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return &os.PathError{Op: "write", Path: fifoPath, Err: err}
	}
	if err := os.Remove(fifoPath); err != nil {
		return fmt.Errorf("container %q: remove start fifo: %w", id, err)
	}
	return nil
}

// State returns the OCI state of container id.
func (e *Executor) State(ctx context.Context, id string) (State, error) {
	dir, err := e.dir(id)
	if err != nil {
		return State{}, err
	}
	st, err := readState(dir, id)
	if err != nil {
		return State{}, err
	}
	switch {
	case !initAlive(st):
		st.Status = StatusStopped
	case fileExists(filepath.Join(dir, fifoName)):
		st.Status = StatusCreated
	default:
		st.Status = StatusRunning
	}
	if st.Status == StatusStopped {
		st.Pid = 0
	}
	return *st, nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// openInit returns a pidfd of the container's init, verified by start
// time, or nil when it is gone. Signals sent through the pidfd cannot hit a
// process that reused the pid.
func openInit(st *State) (int, error) {
	fd, err := unix.PidfdOpen(st.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, nil
		}
		return -1, fmt.Errorf("pidfd_open %d: %w", st.Pid, err)
	}
	if !initAlive(st) {
		unix.Close(fd)
		return -1, nil
	}
	return fd, nil
}

func (e *Executor) cgroup(st *State) (CgroupManager, error) {
	if e.NewCgroup == nil || st.CgroupsPath == "" {
		return nil, nil
	}
	return e.NewCgroup(st.CgroupsPath, nil)
}

// Kill sends sig to the container's init, or with all to every process in
// its cgroup (frozen first so none can fork away). Without a cgroup, all
// relies on the PID namespace: killing its init with SIGKILL kills the rest.
func (e *Executor) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	dir, err := e.dir(id)
	if err != nil {
		return err
	}
	st, err := readState(dir, id)
	if err != nil {
		return err
	}
	if all {
		cg, err := e.cgroup(st)
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("container %q: cgroup: %w", id, err)
		}
		if err == nil && cg != nil {
			return cg.KillAll(ctx, sig)
		}
	}
	pidfd, err := openInit(st)
	if err != nil {
		return fmt.Errorf("container %q: %w", id, err)
	}
	if pidfd < 0 {
		return errdefs.FailedPrecondition("container %q is not running", id)
	}
	defer unix.Close(pidfd)
	if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errdefs.FailedPrecondition("container %q is not running", id)
		}
		return fmt.Errorf("container %q: signal %v: %w", id, sig, err)
	}
	return nil
}

// Delete removes a stopped (or, with force, any) container: kills what is
// left, removes its cgroup and its state directory. A created container
// that never started is killed without force, as other runtimes do.
func (e *Executor) Delete(ctx context.Context, id string, force bool) error {
	dir, err := e.dir(id)
	if err != nil {
		return err
	}
	st, err := e.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status == StatusRunning && !force {
		return errdefs.FailedPrecondition("container %q is running", id)
	}
	cg, err := e.cgroup(&st)
	if errdefs.IsNotFound(err) {
		cg, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("container %q: cgroup: %w", id, err)
	}
	if st.Status != StatusStopped {
		if err := e.killAndWait(ctx, &st, cg); err != nil {
			return fmt.Errorf("container %q: %w", id, err)
		}
	} else if cg != nil && st.SharedPidNS {
		// Exec'd processes or children may outlive the init when the
		// PID namespace is shared.
		if err := cg.KillAll(ctx, unix.SIGKILL); err != nil {
			return fmt.Errorf("container %q: %w", id, err)
		}
	}
	if cg != nil {
		if err := cg.Destroy(ctx); err != nil {
			return fmt.Errorf("container %q: remove cgroup: %w", id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("container %q: remove state: %w", id, err)
	}
	return nil
}

// killAndWait SIGKILLs the init (and the cgroup) and waits until the init
// has exited. It works for a process we did not create: the pidfd turns
// readable when the process exits, whoever reaps it.
func (e *Executor) killAndWait(ctx context.Context, st *State, cg CgroupManager) error {
	pidfd, err := openInit(st)
	if err != nil {
		return err
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
		if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill init: %w", err)
		}
	}
	if cg != nil {
		if err := cg.KillAll(ctx, unix.SIGKILL); err != nil {
			return err
		}
	}
	if pidfd < 0 {
		return nil
	}
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for init: %w", err)
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for init: %w", ctx.Err())
		}
	}
}

// execNamespaces are joined by the parent thread for Exec (the mount
// namespace is joined by the init itself).
var execNamespaces = []struct {
	name string
	typ  int
}{
	{"cgroup", unix.CLONE_NEWCGROUP},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID},
}

// Exec starts p inside running container id: in all its namespaces and
// its cgroup, with the container's seccomp profile and, when p has none,
// its capabilities.
func (e *Executor) Exec(ctx context.Context, id string, p *specs.Process, stdio IO) (proc *Process, retErr error) {
	dir, err := e.dir(id)
	if err != nil {
		return nil, err
	}
	if err := validateProcess(p); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	st, err := readState(dir, id)
	if err != nil {
		return nil, err
	}
	specJSON, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("container %q: read config: %w", id, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(specJSON, &spec); err != nil {
		return nil, fmt.Errorf("container %q: decode config: %w", id, err)
	}
	proc2 := *p
	if proc2.Capabilities == nil && spec.Process != nil {
		proc2.Capabilities = spec.Process.Capabilities
	}
	spec.Process = &proc2

	// Open the namespaces, then check the init is still the same process,
	// so the fds cannot belong to a process that reused the pid.
	base := "/proc/" + strconv.Itoa(st.Pid) + "/ns/"
	var join []nsJoin
	defer func() { closeJoins(join) }()
	for _, ns := range execNamespaces {
		// Joined even when it looks like ours: this process's leader
		// thread may sit in another namespace than the cloning thread, and
		// setns to the namespace one is in is harmless.
		f, err := os.Open(base + ns.name)
		if err != nil {
			return nil, errdefs.FailedPrecondition("container %q is not running", id)
		}
		join = append(join, nsJoin{typ: ns.typ, path: base + ns.name, fd: f})
	}
	mntns, err := os.Open(base + "mnt")
	if err != nil {
		return nil, errdefs.FailedPrecondition("container %q is not running", id)
	}
	defer mntns.Close()
	if !initAlive(st) {
		return nil, errdefs.FailedPrecondition("container %q is not running", id)
	}

	l, err := e.newLaunch(stdio, p.Terminal, mntns)
	if err != nil {
		return nil, err
	}
	defer l.close()
	l.addEnvFD(envMountNS, 2)
	if err := startInit(l.cmd, join); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	l.closeChildFiles()
	pid := l.cmd.Process.Pid
	defer func() {
		if retErr != nil {
			l.cmd.Process.Kill()
			l.cmd.Wait()
		}
	}()
	cg, err := e.cgroup(st)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: cgroup: %w", id, err)
	}
	if cg != nil {
		if err := cg.Apply(pid); err != nil {
			return nil, fmt.Errorf("exec in container %q: join cgroup: %w", id, err)
		}
	}
	if err := e.setProcessLimits(pid, &proc2); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	if err := l.sendConfig(&initConfig{Exec: true, Spec: &spec, Process: &proc2}); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	console, err := l.await(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	return &Process{Pid: pid, Console: console, cmd: l.cmd}, nil
}
