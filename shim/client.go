package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim/internal/wire"
)

// maxResponse bounds one response: two capped exec streams, base64 encoded,
// plus room for the rest.
const maxResponse = 3*MaxExecOutput + 1<<20

// Client talks to one shim. It holds no connection between calls (every
// request dials afresh), so it is safe for concurrent use and survives a
// shim restart of its socket without reconnecting.
type Client struct {
	dir  string
	sock string
	info Info
}

// StartOptions says how to launch a shim.
type StartOptions struct {
	// Binary is the skiff-shim executable.
	Binary string
	// Dir is the shim directory (created if missing).
	Dir string
	// PodID is the pod the shim serves.
	PodID string
	// Args are extra daemon flags (for example the executor's state root).
	Args []string
	// SharePID starts a pod init as PID 1 of a new PID namespace that the
	// pod's containers join (Client.InitPid gives its host pid).
	SharePID bool
	// PodCgroup is the cgroup the pod init joins, as a pause container
	// would (with SharePID).
	PodCgroup string
	// PodUserNS is the pod's user namespace, which the pod init joins
	// (with SharePID).
	PodUserNS string
	// Env is the daemon's environment; nil means a minimal PATH only, so
	// nothing of skiffd's environment leaks into containers' helpers.
	Env []string
}

// Start launches a shim daemon for a pod and returns a client once its
// socket answers. The daemon runs in its own session and is re-parented away
// from the caller (the launcher process forks it and exits), so the caller
// never needs to wait for it and may die without affecting it. If a shim
// already serves Dir, Start returns a client for it.
func Start(ctx context.Context, o StartOptions) (*Client, error) {
	if o.Binary == "" || o.Dir == "" || o.PodID == "" {
		return nil, errdefs.InvalidArgument("shim start needs Binary, Dir and PodID")
	}
	if c, err := Connect(ctx, o.Dir); err == nil {
		if c.info.PodID != o.PodID || (c.info.InitPid != 0) != o.SharePID {
			return nil, errdefs.AlreadyExists("shim in %s serves pod %q (shared PID namespace %v)", o.Dir, c.info.PodID, c.info.InitPid != 0)
		}
		return c, nil
	}
	if err := os.MkdirAll(o.Dir, 0o711); err != nil {
		return nil, err
	}
	args := []string{"daemon", "--dir", o.Dir, "--pod", o.PodID}
	if o.SharePID {
		args = append(args, "--share-pid")
		if o.PodUserNS != "" {
			args = append(args, "--pod-userns", o.PodUserNS)
		}
		if o.PodCgroup != "" {
			args = append(args, "--pod-cgroup", o.PodCgroup)
		}
	}
	args = append(args, o.Args...)
	cmd := exec.CommandContext(ctx, o.Binary, args...)
	cmd.Env = o.Env
	if cmd.Env == nil {
		cmd.Env = defaultEnv()
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// The launcher exits as soon as the daemon is ready (or failed).
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("start shim for pod %q: %w: %s", o.PodID, err, strings.TrimSpace(out.String()))
	}
	return Connect(ctx, o.Dir)
}

// Connect returns a client for the shim serving dir, checking that it
// answers. It wraps errdefs.ErrUnavailable when no shim is there (for
// example it died; its containers' exit records can still be read with
// ReadExitFile).
func Connect(ctx context.Context, dir string) (*Client, error) {
	c := &Client{dir: dir, sock: filepath.Join(dir, SocketName)}
	var resp wire.Response
	if err := c.call(ctx, &wire.Request{Op: wire.OpPing}, &resp); err != nil {
		return nil, err
	}
	if err := c.decode(resp.Info, &c.info, wire.OpPing, "info"); err != nil {
		return nil, err
	}
	return c, nil
}

// Dial returns a client for the shim serving dir without asking it
// anything: its Info is zero until Connect. Its calls fail with
// errdefs.ErrUnavailable when no shim answers, so a caller that makes one
// call (ListContainers, say) saves Connect's round trip.
func Dial(dir string) *Client {
	return &Client{dir: dir, sock: filepath.Join(dir, SocketName)}
}

// Dir returns the shim directory.
func (c *Client) Dir() string { return c.dir }

// Info returns what the shim reported when the client connected.
func (c *Client) Info() Info { return c.info }

// Pid returns the shim process id.
func (c *Client) Pid() int { return c.info.Pid }

// InitPid returns the host pid of the pod init, 0 when the pod does not
// share a PID namespace.
func (c *Client) InitPid() int { return c.info.InitPid }

// dial connects to the shim's socket.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	addr, release, err := wire.SocketAddr(c.dir)
	if err != nil {
		return nil, err
	}
	defer release()
	var d net.Dialer
	return d.DialContext(ctx, "unix", addr)
}

// call sends req and decodes the response into resp. Cancelling ctx closes
// the connection, which also cancels the request in the shim.
func (c *Client) call(ctx context.Context, req *wire.Request, resp *wire.Response) error {
	conn, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errdefs.Unavailable("shim at %s: %v", c.sock, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode shim request %s: %w", req.Op, err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return c.ioErr(ctx, req, err)
	}
	if err := json.NewDecoder(io.LimitReader(conn, maxResponse)).Decode(resp); err != nil {
		return c.ioErr(ctx, req, err)
	}
	return wire.FromWire(resp.Error)
}

func (c *Client) ioErr(ctx context.Context, req *wire.Request, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return errdefs.Unavailable("shim at %s closed during %s: %v", c.sock, req.Op, err)
	}
	return fmt.Errorf("shim at %s, %s: %w", c.sock, req.Op, err)
}

// decode decodes the body b of the answer to op into v; what names the
// body for the error when it is missing.
func (c *Client) decode(b json.RawMessage, v any, op, what string) error {
	if len(b) == 0 || string(b) == "null" {
		return fmt.Errorf("shim %s: %s answer without %s", c.sock, op, what)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("shim %s: %s answer: %w", c.sock, op, err)
	}
	return nil
}

func (c *Client) stateCall(ctx context.Context, req *wire.Request) (ContainerState, error) {
	var resp wire.Response
	if err := c.call(ctx, req, &resp); err != nil {
		return ContainerState{}, err
	}
	var st ContainerState
	if err := c.decode(resp.State, &st, req.Op, "state"); err != nil {
		return ContainerState{}, err
	}
	return st, nil
}

// CreateContainer creates a container stopped at its start barrier. Its
// output is already being logged from here on.
func (c *Client) CreateContainer(ctx context.Context, req CreateRequest) (ContainerState, error) {
	body, err := wire.Encode(&req)
	if err != nil {
		return ContainerState{}, err
	}
	return c.stateCall(ctx, &wire.Request{Op: wire.OpCreate, Create: body})
}

// StartContainer releases the container's start barrier.
func (c *Client) StartContainer(ctx context.Context, id string) (ContainerState, error) {
	return c.stateCall(ctx, &wire.Request{Op: wire.OpStart, ID: id})
}

// KillContainer sends sig to the container's init, or with all to every
// process of the container. Signalling an exited container succeeds.
func (c *Client) KillContainer(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	return c.call(ctx, &wire.Request{Op: wire.OpKill, ID: id, Signal: int(sig), All: all}, &wire.Response{})
}

// ContainerState returns the shim's view of one container.
func (c *Client) ContainerState(ctx context.Context, id string) (ContainerState, error) {
	return c.stateCall(ctx, &wire.Request{Op: wire.OpState, ID: id})
}

// DeleteContainer forgets an exited or created (never started) container
// and removes its default state directory. A running container gives
// errdefs.ErrFailedPrecondition: kill it and Wait first.
func (c *Client) DeleteContainer(ctx context.Context, id string) error {
	return c.call(ctx, &wire.Request{Op: wire.OpDelete, ID: id}, &wire.Response{})
}

// Wait blocks until the container has exited and its exit record is on
// disk, then returns its final state.
func (c *Client) Wait(ctx context.Context, id string) (ContainerState, error) {
	return c.stateCall(ctx, &wire.Request{Op: wire.OpWait, ID: id})
}

// ExecSync runs a command in a running container and returns its output
// (each stream capped at MaxExecOutput) and exit code. A timeout gives an
// error wrapping context.DeadlineExceeded after the command was killed.
func (c *Client) ExecSync(ctx context.Context, req ExecSyncRequest) (ExecSyncResult, error) {
	body, err := wire.Encode(&req)
	if err != nil {
		return ExecSyncResult{}, err
	}
	var resp wire.Response
	if err := c.call(ctx, &wire.Request{Op: wire.OpExecSync, Exec: body}, &resp); err != nil {
		return ExecSyncResult{}, err
	}
	var res ExecSyncResult
	if err := c.decode(resp.Exec, &res, wire.OpExecSync, "result"); err != nil {
		return ExecSyncResult{}, err
	}
	return res, nil
}

// UpdateResources applies new resource limits to the container's cgroup
// (UpdateContainerResources); fields res leaves nil keep their value. The
// shim's runtime, the executor, is the only writer of the cgroup.
func (c *Client) UpdateResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	if res == nil {
		return errdefs.InvalidArgument("update container %q: no resources", id)
	}
	body, err := wire.Encode(res)
	if err != nil {
		return err
	}
	return c.call(ctx, &wire.Request{Op: wire.OpUpdate, ID: id, Update: body}, &wire.Response{})
}

// ReopenLog closes and reopens the container's log file, after the kubelet
// renamed it for rotation.
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	return c.call(ctx, &wire.Request{Op: wire.OpReopen, ID: id}, &wire.Response{})
}

// ListContainers returns every container the shim holds, oldest first.
func (c *Client) ListContainers(ctx context.Context) ([]ContainerState, error) {
	var resp wire.Response
	if err := c.call(ctx, &wire.Request{Op: wire.OpList}, &resp); err != nil {
		return nil, err
	}
	if len(resp.States) == 0 {
		return nil, nil
	}
	var states []ContainerState
	if err := c.decode(resp.States, &states, wire.OpList, "states"); err != nil {
		return nil, err
	}
	return states, nil
}

// Shutdown stops the shim. It fails with errdefs.ErrFailedPrecondition
// while a container is created or running. It returns once the shim's
// process has gone (or ctx ends).
func (c *Client) Shutdown(ctx context.Context) error {
	if err := c.call(ctx, &wire.Request{Op: wire.OpShutdown}, &wire.Response{}); err != nil {
		return err
	}
	for {
		if err := syscall.Kill(c.info.Pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		// A zombie (the caller is still the parent, as in tests) counts
		// as gone.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.info.Pid)); err != nil || zombie(b) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}
