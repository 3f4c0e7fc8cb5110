package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
