package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim/crilog"
)

// ioDrainTimeout bounds how long an exit waits for the process's output to
// reach the log before the exit is reported. Reading goes on regardless
// until the last writer closes the pipe; the bound only matters when a
// process that outlived the container still holds it.
const ioDrainTimeout = 2 * time.Second

// trimDelay is how long the shim must be idle (no request in flight)
// before it returns free heap memory to the kernel.
const trimDelay = 2 * time.Second

// validID keeps container ids usable as one path element.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// Config configures a shim daemon.
type Config struct {
	// Dir is the shim directory: socket, pid file, default container state
	// directories.
	Dir string
	// PodID names the pod, for logs and Info.
	PodID string
	// Runtime creates the containers.
	Runtime Runtime
	// Logger receives the daemon's own diagnostics; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called once the socket accepts connections.
	Ready func()
	// SharePID starts the pod init (this binary as "daemon --pod-init",
	// see InitBinary) as PID 1 of a new PID namespace before serving.
	SharePID bool
	// InitBinary is the skiff-shim binary for the pod init; empty means
	// /proc/self/exe.
	InitBinary string
	// PodCgroup is the cgroup the pod init joins (the runtime must
	// implement PodCgroups); empty leaves it in the shim's.
	PodCgroup string
}

// Serve runs a shim daemon in the calling process until ctx ends or a
// client calls Shutdown. It makes the process a child subreaper, so it must
// be the only shim in its process and nothing else in the process may wait
// for children.
func Serve(ctx context.Context, cfg Config) error {
	if cfg.Dir == "" || cfg.Runtime == nil {
		return errdefs.InvalidArgument("shim config needs Dir and Runtime")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return &os.SyscallError{Syscall: "prctl(PR_SET_CHILD_SUBREAPER)", Err: err}
	}
	if err := os.MkdirAll(cfg.Dir, 0o711); err != nil {
		return err
	}
	sock := filepath.Join(cfg.Dir, SocketName)
	addr, release, err := socketAddr(cfg.Dir)
	if err != nil {
		return err
	}
	// A socket file left by a dead shim is stale; a live one means another
	// shim owns this directory.
	if c, err := net.Dial("unix", addr); err == nil {
		c.Close()
		release()
		return errdefs.AlreadyExists("shim listening on %s", sock)
	}
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	release()
	if err != nil {
		return err
	}
	// The listener may know the socket by a /proc/self/fd name that is
	// gone by now: remove the file by its real path, so a client never
	// dials a dead shim.
	ln.SetUnlinkOnClose(false)
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	pidFile := filepath.Join(cfg.Dir, PidFileName)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		ln.Close()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &daemon{
		cfg:        cfg,
		reaper:     newReaper(),
		containers: make(map[string]*container),
		reserved:   make(map[string]bool),
		shutdown:   cancel,
	}
	d.trim = time.AfterFunc(trimDelay, trimMemory)
	defer d.trim.Stop()
	if cfg.SharePID {
		stop, err := d.startPodInit()
		if err != nil {
			ln.Close()
			os.Remove(pidFile)
			return err
		}
		defer stop()
	}
	go d.reaper.run(ctx)
	context.AfterFunc(ctx, func() { ln.Close() })
	if cfg.Ready != nil {
		cfg.Ready()
	}
	cfg.Logger.Info("shim serving", "pod", cfg.PodID, "socket", sock)

	var wg sync.WaitGroup
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			cancel()
			wg.Wait()
			return fmt.Errorf("accept on %s: %w", sock, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.serveConn(ctx, conn)
		}()
	}
	wg.Wait()
	os.Remove(pidFile)
	return nil
}

type daemon struct {
	cfg      Config
	reaper   *reaper
	shutdown context.CancelFunc
	initPid  int // pod init, 0 without a shared PID namespace

	// trim returns free memory to the kernel once requests stop: the Go
	// heap would otherwise keep its high-water mark resident, and an idle
	// shim should cost as little as possible.
	trim *time.Timer

	mu         sync.Mutex
	containers map[string]*container
	// reserved holds ids whose create is in progress.
	reserved map[string]bool
}

// container is the shim's record of one container. Fields below mu change
// over its life; the rest are fixed at create.
type container struct {
	id        string
	pid       int
	pidfd     int
	spec      *specs.Spec
	stateDir  string
	ownDir    bool // stateDir is the default one under the shim dir
	logPath   string
	createdAt time.Time
	exited    chan struct{} // closed once the exit is recorded
	ioDone    chan struct{} // closed when every output stream hit EOF
	readers   []*os.File    // shim ends of output pipes (or pty master)
	tty       bool
	stdinOnce bool

	// Below mu.
	stdinWrite *os.File
	attachers  map[*attacher]bool

	mu     sync.Mutex
	log    *crilog.Writer // nil once the output is drained or no log
	status Status
	exit   ExitRecord
	// reaped is set as soon as the init was waited for, before the exit
	// is recorded (which waits for the output to drain).
	reaped bool
}

func (c *container) snapshot() ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ContainerState{
		ID:        c.id,
		Status:    c.status,
		Pid:       c.pid,
		CreatedAt: c.createdAt,
		StartedAt: c.exit.StartedAt,
		LogPath:   c.logPath,
		StateDir:  c.stateDir,
	}
	if c.status == StatusExited {
		st.FinishedAt = c.exit.FinishedAt
		st.ExitCode = c.exit.ExitCode
		st.Signal = c.exit.Signal
		st.OOMKilled = c.exit.OOMKilled
		st.Reason = c.exit.Reason
	}
	return st
}

func (d *daemon) get(id string) (*container, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.containers[id]
	if !ok {
		return nil, errdefs.NotFound("container %q in shim of pod %q", id, d.cfg.PodID)
	}
	return c, nil
}

// serveConn answers the one request of conn. The request's context ends
// when the client closes its end, so an abandoned Wait or ExecSync stops.
func (d *daemon) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	d.trim.Stop()
	defer d.trim.Reset(trimDelay)
	br := bufio.NewReader(conn)
	line, err := readLine(br, maxRequest)
	if err != nil {
		return
	}
	var req request
	var resp response
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = toWire(errdefs.InvalidArgument("decode shim request: %v", err))
	} else if req.Op == opExec || req.Op == opAttach {
		d.serveStream(ctx, conn, br, &req)
		return
	} else {
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			var b [1]byte
			conn.Read(b[:])
			cancel()
		}()
		resp = d.dispatch(rctx, &req)
		cancel()
	}
	enc := json.NewEncoder(conn)
	if err := enc.Encode(&resp); err != nil {
		d.cfg.Logger.Warn("shim reply failed", "op", req.Op, "id", req.ID, "error", err)
	}
	if req.Op == opShutdown && resp.Error == nil {
		d.shutdown()
	}
}

// readLine reads one newline-terminated line of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errdefs.InvalidArgument("shim request longer than %d bytes", max)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func (d *daemon) dispatch(ctx context.Context, req *request) response {
	var resp response
	var err error
	var st ContainerState
	switch req.Op {
	case opPing:
		resp.Info = &Info{Pid: os.Getpid(), PodID: d.cfg.PodID, Dir: d.cfg.Dir, InitPid: d.initPid}
	case opCreate:
		if req.Create == nil {
			err = errdefs.InvalidArgument("create request without body")
			break
		}
		st, err = d.create(ctx, req.Create)
		resp.State = &st
	case opStart:
		st, err = d.start(ctx, req.ID)
		resp.State = &st
	case opKill:
		err = d.kill(ctx, req.ID, unix.Signal(req.Signal), req.All)
	case opState:
		var c *container
		if c, err = d.get(req.ID); err == nil {
			st = c.snapshot()
			resp.State = &st
		}
	case opDelete:
		err = d.delete(ctx, req.ID)
	case opWait:
		st, err = d.wait(ctx, req.ID)
		resp.State = &st
	case opExecSync:
		if req.Exec == nil {
			err = errdefs.InvalidArgument("exec request without body")
			break
		}
		var res ExecSyncResult
		res, err = d.execSync(ctx, req.Exec)
		resp.Exec = &res
	case opReopen:
		err = d.reopenLog(req.ID)
	case opList:
		resp.States = d.list()
	case opShutdown:
		err = d.checkIdle()
	default:
		err = errdefs.InvalidArgument("unknown shim operation %q", req.Op)
	}
	if err != nil {
		return response{Error: toWire(err)}
	}
	return resp
}

// startPodInit starts the pod init and returns the function that stops it
// when the shim shuts down (ending every process left in the namespace).
func (d *daemon) startPodInit() (func(), error) {
	bin := d.cfg.InitBinary
	if bin == "" {
		bin = "/proc/self/exe"
	}
	p, pidfd, err := d.reaper.spawn(func() (Process, error) {
		cmd, err := startPodInit(bin)
		if err != nil {
			return nil, err
		}
		return execProcess{cmd}, nil
	})
	if err != nil {
		return nil, err
	}
	d.initPid = p.Pid()
	pc, _ := d.cfg.Runtime.(PodCgroups)
	if d.cfg.PodCgroup != "" && pc == nil {
		d.cfg.Logger.Warn("the runtime cannot place the pod init in the pod cgroup", "cgroup", d.cfg.PodCgroup)
	}
	if d.cfg.PodCgroup != "" && pc != nil {
		if err := pc.JoinPodCgroup(d.cfg.PodCgroup, p.Pid()); err != nil {
			if pidfd >= 0 {
				unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
				unix.Close(pidfd)
			}
			_, _ = p.Wait()
			d.reaper.release(p.Pid())
			_ = pc.RemovePodCgroup(context.Background(), d.cfg.PodCgroup)
			return nil, fmt.Errorf("pod init: %w", err)
		}
	}
	exited := make(chan struct{})
	stopping := false
	var mu sync.Mutex
	go func() {
		es, err := p.Wait()
		d.reaper.release(p.Pid())
		mu.Lock()
		if !stopping {
			// The pod's PID namespace is gone with it: containers that
			// share it were killed by the kernel.
			d.cfg.Logger.Error("pod init exited", "pid", p.Pid(), "exitCode", es.Code, "signal", es.Signal, "error", err)
		}
		mu.Unlock()
		close(exited)
	}()
	return func() {
		mu.Lock()
		stopping = true
		mu.Unlock()
		if pidfd >= 0 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			unix.Close(pidfd)
		}
		<-exited
		if d.cfg.PodCgroup != "" && pc != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := pc.RemovePodCgroup(ctx, d.cfg.PodCgroup); err != nil {
				d.cfg.Logger.Warn("remove the pod init's cgroup", "cgroup", d.cfg.PodCgroup, "err", err)
			}
		}
	}, nil
}

// pipes are the shim's and the child's ends of one process's stdio.
type pipes struct {
	child   Stdio
	readers []*os.File
	streams []crilog.Stream
	stdin   *os.File // shim's write end, if any
}

func (p *pipes) closeChild() {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{p.child.Stdin, p.child.Stdout, p.child.Stderr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

func (p *pipes) closeAll() {
	p.closeChild()
	for _, r := range p.readers {
		r.Close()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
}

// newPipes makes the stdio pipes of a process; with tty there are none, the
// Runtime returns a console instead (see useConsole).
func newPipes(stdin, tty bool) (*pipes, error) {
	p := &pipes{}
	if tty {
		return p, nil
	}
	for _, s := range []crilog.Stream{crilog.Stdout, crilog.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, err
		}
		p.readers = append(p.readers, r)
		p.streams = append(p.streams, s)
		if s == crilog.Stdout {
			p.child.Stdout = w
		} else {
			p.child.Stderr = w
		}
	}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, err
		}
		p.child.Stdin = r
		p.stdin = w
	}
	return p, nil
}

// useConsole takes the terminal master the Runtime allocated as the
// output (logged as stdout) and, with stdin, as the input.
func (p *pipes) useConsole(proc Process, stdin bool) error {
	console := proc.Console()
	if console == nil {
		return errors.New("runtime returned no console for a tty container")
	}
	p.readers = []*os.File{console}
	p.streams = []crilog.Stream{crilog.Stdout}
	if stdin {
		p.stdin = console
	}
	return nil
}

// abandon kills and reaps a process whose set-up failed after the Runtime
// started it.
func (d *daemon) abandon(ctx context.Context, id string, proc Process, pidfd int) {
	if pidfd >= 0 {
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		unix.Close(pidfd)
	}
	proc.Wait()
	d.reaper.release(proc.Pid())
	d.reaper.paused(func() error { return d.cfg.Runtime.Delete(ctx, id) })
}

func (d *daemon) create(ctx context.Context, req *CreateRequest) (ContainerState, error) {
	id := req.ID
	if !validID.MatchString(id) {
		return ContainerState{}, errdefs.InvalidArgument("container id %q", id)
	}
	if req.Spec == nil || req.Spec.Process == nil {
		return ContainerState{}, errdefs.InvalidArgument("container %q: spec without process", id)
	}
	if req.Tty != req.Spec.Process.Terminal {
		return ContainerState{}, errdefs.InvalidArgument("container %q: tty %v but spec.process.terminal %v", id, req.Tty, req.Spec.Process.Terminal)
	}
	c := &container{
		id:        id,
		pidfd:     -1,
		spec:      req.Spec,
		stateDir:  req.StateDir,
		logPath:   req.LogPath,
		createdAt: time.Now(),
		status:    StatusCreated,
		exited:    make(chan struct{}),
		ioDone:    make(chan struct{}),
	}
	if c.stateDir == "" {
		c.stateDir = ContainerStateDir(d.cfg.Dir, id)
		c.ownDir = true
	}
	// Reserve the id before the slow part so a concurrent create of the
	// same id fails instead of racing.
	d.mu.Lock()
	if _, ok := d.containers[id]; ok || d.reserved[id] {
		d.mu.Unlock()
		return ContainerState{}, errdefs.AlreadyExists("container %q in shim of pod %q", id, d.cfg.PodID)
	}
	d.reserved[id] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.reserved, id)
		d.mu.Unlock()
	}()

	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return ContainerState{}, fmt.Errorf("container %q: %w", id, err)
	}
	// An exit record left from an earlier container of the same id would
	// be mistaken for this one's exit.
	if err := os.Remove(filepath.Join(c.stateDir, ExitFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ContainerState{}, fmt.Errorf("container %q: %w", id, err)
	}
	if req.LogPath != "" {
		w, err := crilog.Open(req.LogPath, crilog.Options{})
		if err != nil {
			return ContainerState{}, errdefs.InvalidArgument("container %q log: %v", id, err)
		}
		c.log = w
	}
	p, err := newPipes(req.Stdin, req.Tty)
	if err != nil {
		c.closeLog()
		return ContainerState{}, fmt.Errorf("container %q stdio: %w", id, err)
	}
	proc, pidfd, err := d.reaper.spawn(func() (Process, error) {
		return d.cfg.Runtime.Create(ctx, id, req.Spec, req.Rootfs, p.child)
	})
	p.closeChild()
	if err == nil && req.Tty {
		err = p.useConsole(proc, req.Stdin)
		if err != nil {
			d.abandon(ctx, id, proc, pidfd)
		}
	}
	if err != nil {
		p.closeAll()
		c.closeLog()
		if c.ownDir {
			os.RemoveAll(c.stateDir)
		}
		return ContainerState{}, fmt.Errorf("create container %q: %w", id, err)
	}
	pid := proc.Pid()
	c.pid, c.pidfd = pid, pidfd
	c.readers = p.readers
	c.stdinWrite = p.stdin
	c.tty = req.Tty
	c.stdinOnce = req.StdinOnce
	d.mu.Lock()
	d.containers[id] = c
	d.mu.Unlock()
	d.copyOutput(c, p)
	go d.watch(c, proc)
	d.cfg.Logger.Info("container created", "id", id, "pid", pid)
	return c.snapshot(), nil
}

// copyOutput starts one copier per output stream; when all have hit EOF
// the log is closed and ioDone closed.
func (d *daemon) copyOutput(c *container, p *pipes) {
	var wg sync.WaitGroup
	for i, r := range p.readers {
		stream := p.streams[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.mu.Lock()
			w := c.log
			c.mu.Unlock()
			typ := byte(frameStdout)
			if stream == crilog.Stderr {
				typ = frameStderr
			}
			in := io.TeeReader(r, fanout{c: c, typ: typ})
			var err error
			if w != nil {
				err = w.Copy(stream, in)
			} else {
				_, err = io.Copy(io.Discard, in)
				if errors.Is(err, unix.EIO) {
					err = nil // pty master after the last slave closed
				}
			}
			if err != nil {
				d.cfg.Logger.Warn("container output", "id", c.id, "stream", stream, "error", err)
			}
		}()
	}
	go func() {
		wg.Wait()
		for _, r := range p.readers {
			r.Close()
		}
		c.closeLog()
		close(c.ioDone)
	}()
}

func (c *container) closeLog() {
	c.mu.Lock()
	w := c.log
	c.log = nil
	c.mu.Unlock()
	if w != nil {
		w.Close()
	}
}

// watch waits for the container's main process to end, records the exit
// durably and only then publishes it.
func (d *daemon) watch(c *container, proc Process) {
	es, err := proc.Wait()
	at := time.Now()
	d.reaper.release(c.pid)
	c.mu.Lock()
	c.reaped = true
	c.mu.Unlock()
	if err != nil {
		d.cfg.Logger.Error("wait for container", "id", c.id, "error", err)
		es = ExitStatus{Code: 255}
	}
	select {
	case <-c.ioDone:
	case <-time.After(ioDrainTimeout):
		d.cfg.Logger.Warn("container output still open after exit", "id", c.id)
	}
	code, sig := es.Code, int(es.Signal)
	oom := false
	if oc, ok := d.cfg.Runtime.(OOMChecker); ok {
		var err error
		oom, err = oc.OOMKilled(context.Background(), c.id)
		if err != nil {
			d.cfg.Logger.Warn("oom check", "id", c.id, "error", err)
		}
	}
	reason := ReasonError
	switch {
	case oom:
		reason = ReasonOOMKilled
	case code == 0:
		reason = ReasonCompleted
	}
	c.mu.Lock()
	rec := ExitRecord{
		ID:         c.id,
		Pid:        c.pid,
		ExitCode:   code,
		Signal:     sig,
		StartedAt:  c.exit.StartedAt,
		FinishedAt: at,
		OOMKilled:  oom,
		Reason:     reason,
	}
	c.mu.Unlock()
	if err := WriteExitFile(c.stateDir, rec); err != nil {
		// Still publish: the live shim's answer is right even though a
		// restarted daemon without the shim would not find it.
		d.cfg.Logger.Error("write exit record", "id", c.id, "dir", c.stateDir, "error", err)
	}
	c.mu.Lock()
	c.exit = rec
	c.status = StatusExited
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	stdin := c.stdinWrite
	c.stdinWrite = nil
	c.mu.Unlock()
	if stdin != nil && (len(c.readers) == 0 || stdin != c.readers[0]) {
		stdin.Close()
	}
	close(c.exited)
	d.cfg.Logger.Info("container exited", "id", c.id, "exitCode", code, "signal", sig, "oom", oom)
}

func (d *daemon) start(ctx context.Context, id string) (ContainerState, error) {
	c, err := d.get(id)
	if err != nil {
		return ContainerState{}, err
	}
	c.mu.Lock()
	if c.status != StatusCreated {
		st := c.status
		c.mu.Unlock()
		return ContainerState{}, errdefs.FailedPrecondition("container %q is %s, not created", id, st)
	}
	// Holding c.mu across Start orders it before a quick exit: watch
	// cannot mark the container exited before it is marked running.
	err = d.reaper.paused(func() error { return d.cfg.Runtime.Start(ctx, id) })
	if err == nil {
		c.status = StatusRunning
		c.exit.StartedAt = time.Now()
	}
	c.mu.Unlock()
	if err != nil {
		return ContainerState{}, fmt.Errorf("start container %q: %w", id, err)
	}
	return c.snapshot(), nil
}

// kill signals the container. Signalling a container that already exited
// succeeds, so StopContainer stays idempotent.
func (d *daemon) kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	c, err := d.get(id)
	if err != nil {
		return err
	}
	if sig <= 0 || sig > 64 {
		return errdefs.InvalidArgument("signal %d", sig)
	}
	err = d.reaper.paused(func() error { return d.cfg.Runtime.Kill(ctx, id, sig, all) })
	if err != nil {
		c.mu.Lock()
		gone := c.reaped
		c.mu.Unlock()
		if gone {
			return nil
		}
		return fmt.Errorf("kill container %q: %w", id, err)
	}
	return nil
}

func (d *daemon) wait(ctx context.Context, id string) (ContainerState, error) {
	c, err := d.get(id)
	if err != nil {
		return ContainerState{}, err
	}
	select {
	case <-c.exited:
		return c.snapshot(), nil
	case <-ctx.Done():
		return ContainerState{}, ctx.Err()
	}
}

// delete forgets an exited or never started container. A created one is
// killed first; a running one must be stopped by the caller.
func (d *daemon) delete(ctx context.Context, id string) error {
	c, err := d.get(id)
	if err != nil {
		return err
	}
	switch c.snapshot().Status {
	case StatusRunning:
		return errdefs.FailedPrecondition("container %q is running", id)
	case StatusCreated:
		c.mu.Lock()
		fd := c.pidfd
		if fd >= 0 {
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		c.mu.Unlock()
		if err := d.reaper.paused(func() error { return d.cfg.Runtime.Kill(ctx, id, unix.SIGKILL, true) }); err != nil {
			d.cfg.Logger.Debug("kill created container", "id", id, "error", err)
		}
		select {
		case <-c.exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := d.reaper.paused(func() error { return d.cfg.Runtime.Delete(ctx, id) }); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %q: %w", id, err)
	}
	select {
	case <-c.ioDone:
	case <-time.After(ioDrainTimeout):
		// A process that escaped the container holds the output open;
		// stop reading so the shim does not keep the log forever.
		for _, r := range c.readers {
			r.Close()
		}
	}
	d.mu.Lock()
	delete(d.containers, id)
	d.mu.Unlock()
	if c.ownDir {
		if err := os.RemoveAll(c.stateDir); err != nil {
			return err
		}
	}
	d.cfg.Logger.Info("container deleted", "id", id)
	return nil
}

func (d *daemon) reopenLog(id string) error {
	c, err := d.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	w := c.log
	c.mu.Unlock()
	if w == nil {
		if c.logPath == "" {
			return errdefs.FailedPrecondition("container %q has no log path", id)
		}
		return errdefs.FailedPrecondition("container %q is not running: its output is closed", id)
	}
	if err := w.Reopen(); err != nil {
		return fmt.Errorf("reopen log of container %q: %w", id, err)
	}
	return nil
}

func (d *daemon) list() []ContainerState {
	d.mu.Lock()
	cs := make([]*container, 0, len(d.containers))
	for _, c := range d.containers {
		cs = append(cs, c)
	}
	d.mu.Unlock()
	out := make([]ContainerState, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.snapshot())
	}
	slices.SortFunc(out, func(a, b ContainerState) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

func (d *daemon) checkIdle() error {
	for _, st := range d.list() {
		if st.Status != StatusExited {
			return errdefs.FailedPrecondition("container %q is %s", st.ID, st.Status)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.reserved {
		return errdefs.FailedPrecondition("container %q is being created", id)
	}
	return nil
}

// cappedBuffer keeps the first max bytes written and drops the rest, so a
// chatty exec cannot grow the shim without bound.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (d *daemon) execSync(ctx context.Context, req *ExecSyncRequest) (ExecSyncResult, error) {
	var res ExecSyncResult
	c, err := d.get(req.ID)
	if err != nil {
		return res, err
	}
	if st := c.snapshot().Status; st != StatusRunning {
		return res, errdefs.FailedPrecondition("container %q is %s, not running", req.ID, st)
	}
	if len(req.Cmd) == 0 {
		return res, errdefs.InvalidArgument("exec in container %q: empty command", req.ID)
	}
	var proc specs.Process
	if req.Process != nil {
		proc = *req.Process
	} else {
		proc = *c.spec.Process
	}
	proc.Args = req.Cmd
	proc.Terminal = false
	proc.ConsoleSize = nil

	p, err := newPipes(false, false)
	if err != nil {
		return res, fmt.Errorf("exec in container %q: %w", req.ID, err)
	}
	xp, pidfd, err := d.reaper.spawn(func() (Process, error) {
		return d.cfg.Runtime.Exec(ctx, req.ID, &proc, p.child)
	})
	p.closeChild()
	if err != nil {
		p.closeAll()
		return res, fmt.Errorf("exec in container %q: %w", req.ID, err)
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	type waited struct {
		es  ExitStatus
		err error
	}
	exitc := make(chan waited, 1)
	go func() {
		es, err := xp.Wait()
		d.reaper.release(xp.Pid())
		exitc <- waited{es, err}
	}()
	outs := []*cappedBuffer{{max: MaxExecOutput}, {max: MaxExecOutput}}
	var wg sync.WaitGroup
	for i, r := range p.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(outs[i], r)
		}()
	}
	ioDone := make(chan struct{})
	go func() { wg.Wait(); close(ioDone) }()
	defer p.closeAll()

	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var w waited
	var failure error
	select {
	case w = <-exitc:
	case <-timeout:
		failure = fmt.Errorf("exec %q in container %q timed out after %s: %w", req.Cmd[0], req.ID, req.Timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		failure = ctx.Err()
	}
	if failure != nil {
		if pidfd >= 0 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		}
		<-exitc
		return res, failure
	}
	select {
	case <-ioDone:
	case <-time.After(ioDrainTimeout):
		// A background child of the command holds the pipes; answer with
		// what arrived. closeAll (deferred) stops the copiers.
	}
	p.closeAll()
	<-ioDone
	res.Stdout = outs[0].buf.Bytes()
	res.Stderr = outs[1].buf.Bytes()
	if w.err != nil {
		return res, fmt.Errorf("exec in container %q: wait: %w", req.ID, w.err)
	}
	res.ExitCode = w.es.Code
	return res, nil
}
