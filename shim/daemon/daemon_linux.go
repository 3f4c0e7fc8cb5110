package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
	"github.com/skiffcri/skiff/shim/crilog"
	"github.com/skiffcri/skiff/shim/internal/wire"
)

// ioDrainTimeout bounds how long an exit waits for the process's output to
// reach the log before the exit is reported. Reading goes on regardless
// until the last writer closes the pipe; the bound only matters when a
// process that outlived the container still holds it.
const ioDrainTimeout = 2 * time.Second

// trimDelay is how long the shim must be idle (no request in flight)
// before it returns free heap memory to the kernel.
const trimDelay = 2 * time.Second

// validID keeps container ids usable as one path element: 1 to 128
// characters of [A-Za-z0-9_.+-], the first alphanumeric. It is written out
// rather than a regexp: the compiled {0,127} repetition alone took 120 KB
// of every shim's heap.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

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
	// SharePID starts the pod init (skiff-nsenter beside InitBinary, see
	// package oci/nsenter) as PID 1 of a new PID namespace before serving.
	SharePID bool
	// InitBinary is the skiff-shim binary the pod init is installed
	// beside; empty means /proc/self/exe.
	InitBinary string
	// PodCgroup is the cgroup the pod init joins (the runtime must
	// implement PodCgroups); empty leaves it in the shim's.
	PodCgroup string
	// PodUserNS is the pod's user namespace: the pod init joins it and
	// its PID namespace is owned by it, so the pod's containers, which
	// join both, may mount their /proc.
	PodUserNS string
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
	sock := filepath.Join(cfg.Dir, shim.SocketName)
	addr, release, err := wire.SocketAddr(cfg.Dir)
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
	pidFile := filepath.Join(cfg.Dir, shim.PidFileName)
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
	go warmCreateDecoding()
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
	id    string
	pid   int
	pidfd int
	// process is the spec's process, the defaults of every exec; the rest
	// of the spec is the executor's once created, and not kept.
	process   *specs.Process
	stateDir  string
	ownDir    bool // stateDir is the default one under the shim dir
	logPath   string
	createdAt time.Time
	exited    chan struct{} // closed once the exit is recorded
	ioDone    chan struct{} // closed when every output stream hit EOF
	readers   []*os.File    // shim ends of output pipes (or pty master)
	tty       bool
	stdinOnce bool
	// deleting is held by a delete for its whole run: two deletes of one
	// container (a pod's stop and a container's release at its exit)
	// must not both run the executor's delete, and its poststop hooks.
	deleting sync.Mutex

	// Below mu.
	stdinWrite *os.File
	attachers  map[*attacher]bool

	mu     sync.Mutex
	log    *crilog.Writer // nil once the output is drained or no log
	status shim.Status
	exit   shim.ExitRecord
	// reaped is set as soon as the init was waited for, before the exit
	// is recorded (which waits for the output to drain).
	reaped bool
}

func (c *container) snapshot() shim.ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := shim.ContainerState{
		ID:        c.id,
		Status:    c.status,
		Pid:       c.pid,
		CreatedAt: c.createdAt,
		StartedAt: c.exit.StartedAt,
		LogPath:   c.logPath,
		StateDir:  c.stateDir,
	}
	if c.status == shim.StatusExited {
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
	defer d.trim.Reset(trimDelay)
	br := bufio.NewReader(conn)
	line, err := wire.ReadLine(br, wire.MaxRequest)
	if err != nil {
		return
	}
	var req wire.Request
	var resp wire.Response
	// A request in flight holds off the trim, but not a wait: skiffd
	// keeps one open per container for as long as it lives, to learn of
	// its exit, and a shim whose only requests are waits is idle.
	err = json.Unmarshal(line, &req)
	if err != nil || req.Op != wire.OpWait {
		d.trim.Stop()
	}
	if err != nil {
		resp.Error = wire.ToWire(errdefs.InvalidArgument("decode shim request: %v", err))
	} else if req.Op == wire.OpExec || req.Op == wire.OpAttach {
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
	if req.Op == wire.OpShutdown && resp.Error == nil {
		d.shutdown()
	}
}

func (d *daemon) dispatch(ctx context.Context, req *wire.Request) wire.Response {
	var resp wire.Response
	var err error
	// body is the answer's body, encoded into the field of resp it
	// points at.
	var body any
	var field *json.RawMessage
	answer := func(v any, f *json.RawMessage) { body, field = v, f }
	switch req.Op {
	case wire.OpPing:
		answer(&shim.Info{Pid: os.Getpid(), PodID: d.cfg.PodID, Dir: d.cfg.Dir, InitPid: d.initPid}, &resp.Info)
	case wire.OpCreate:
		var cr shim.CreateRequest
		if err = wire.Decode(req.Create, &cr, req.Op); err != nil {
			break
		}
		var st shim.ContainerState
		st, err = d.create(ctx, &cr)
		answer(&st, &resp.State)
	case wire.OpStart:
		var st shim.ContainerState
		st, err = d.start(ctx, req.ID)
		answer(&st, &resp.State)
	case wire.OpKill:
		err = d.kill(ctx, req.ID, unix.Signal(req.Signal), req.All)
	case wire.OpState:
		var c *container
		if c, err = d.get(req.ID); err == nil {
			st := c.snapshot()
			answer(&st, &resp.State)
		}
	case wire.OpDelete:
		err = d.delete(ctx, req.ID)
	case wire.OpWait:
		var st shim.ContainerState
		st, err = d.wait(ctx, req.ID)
		answer(&st, &resp.State)
	case wire.OpExecSync:
		var er shim.ExecSyncRequest
		if err = wire.Decode(req.Exec, &er, "exec"); err != nil {
			break
		}
		var res shim.ExecSyncResult
		res, err = d.execSync(ctx, &er)
		answer(&res, &resp.Exec)
	case wire.OpUpdate:
		var res specs.LinuxResources
		if err = wire.Decode(req.Update, &res, req.Op); err != nil {
			break
		}
		err = d.update(ctx, req.ID, &res)
	case wire.OpReopen:
		err = d.reopenLog(req.ID)
	case wire.OpList:
		if states := d.list(); len(states) > 0 {
			answer(states, &resp.States)
		}
	case wire.OpShutdown:
		err = d.checkIdle()
	default:
		err = errdefs.InvalidArgument("unknown shim operation %q", req.Op)
	}
	if err == nil && field != nil {
		*field, err = wire.Encode(body)
	}
	if err != nil {
		return wire.Response{Error: wire.ToWire(err)}
	}
	return resp
}

func (d *daemon) list() []shim.ContainerState {
	d.mu.Lock()
	cs := make([]*container, 0, len(d.containers))
	for _, c := range d.containers {
		cs = append(cs, c)
	}
	d.mu.Unlock()
	out := make([]shim.ContainerState, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.snapshot())
	}
	slices.SortFunc(out, func(a, b shim.ContainerState) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

func (d *daemon) checkIdle() error {
	for _, st := range d.list() {
		if st.Status != shim.StatusExited {
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
