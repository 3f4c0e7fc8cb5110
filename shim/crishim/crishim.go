// Package crishim adapts the pod shims (package shim) to the CRI layer's
// view of them (cri.Shims, cri.Shim): where each pod's shim and each
// container's exit record live under the state directory, how a shim is
// started, found, watched and stopped, and what is done to a container when
// its shim is gone.
package crishim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/statedir"
	"github.com/skiffcri/skiff/shim"
)

// shims finds and starts the per-pod shims: their directories live under
// state/shims/<pod>, container exit records under state/containers/<id> so
// they outlive a stopped pod's shim.
type shims struct {
	binary   string
	stateDir string
	// runtimes are the runtime handlers that name an OCI runtime CLI.
	runtimes map[string]OCIRuntime
	// debug starts the shims logging debug messages (skiffd's level).
	debug bool
}

// OCIRuntime is an external OCI runtime CLI (runc, crun, runsc) that runs
// the containers of the pods whose runtime handler names it, driven by the
// pod's shim.
type OCIRuntime struct {
	// Binary is the runtime's executable, an absolute path.
	Binary string
	// Root is the runtime's state directory (its --root).
	Root string
}

// Options say how the pods' shims are started.
type Options struct {
	// Binary is the skiff-shim executable.
	Binary string
	// StateDir holds the shims' files.
	StateDir string
	// Runtimes maps handler names to the OCI runtimes that run their pods'
	// containers; any other handler's pods run on the built-in executor.
	Runtimes map[string]OCIRuntime
	// Debug starts the shims logging debug messages, among them the
	// executor's create phases.
	Debug bool
}

// New returns the pods' shims.
func New(o Options) cri.Shims {
	return shims{binary: o.Binary, stateDir: o.StateDir, runtimes: o.Runtimes, debug: o.Debug}
}

func (s shims) dir(podID string) string { return filepath.Join(s.stateDir, "shims", podID) }
func (s shims) containerDir(id string) string {
	return statedir.Under(s.stateDir).Dir(id)
}
func (s shims) runtimeRoot() string { return RuntimeRoot(s.stateDir) }

// RuntimeRoot is the executor's state directory of the pods' shims under
// skiffd's state directory.
func RuntimeRoot(stateDir string) string     { return filepath.Join(stateDir, "oci") }
func (s shims) wrap(c *shim.Client) cri.Shim { return &shimClient{c: c, s: s} }

// executor runs the executor's own CLI on the shims' executor state: what
// is done to a container without its shim is done by the executor too,
// never by skiffd itself (which does not link it).
func (s shims) executor() shim.RuntimeCLI {
	return shim.RuntimeCLI{Binary: s.binary, Root: s.runtimeRoot()}
}

// runtimeFor returns the CLI of whichever runtime keeps state for
// container id: the executor or one of the OCI runtimes. Container IDs are
// unique, so at most one has a state directory named after it; without
// one, the executor's CLI is returned (whose Delete and State then report
// NotFound without running anything).
func (s shims) runtimeFor(id string) shim.RuntimeCLI {
	ex := s.executor()
	if ok, _ := ex.HasState(id); ok {
		return ex
	}
	for _, rt := range s.runtimes {
		cli := shim.RuntimeCLI{Binary: rt.Binary, Root: rt.Root, OCI: true}
		if ok, _ := cli.HasState(id); ok {
			return cli
		}
	}
	return ex
}

// shimArgs are the flags that choose the shim's runtime for handler.
func (s shims) shimArgs(handler string) []string {
	var args []string
	if s.debug {
		args = append(args, "--debug")
	}
	if rt, ok := s.runtimes[handler]; ok {
		return append(args, "--runtime-binary", rt.Binary, "--runtime-root", rt.Root)
	}
	return append(args, "--runtime-root", s.runtimeRoot())
}

func (s shims) Start(ctx context.Context, podID string, opts cri.ShimOptions) (cri.Shim, error) {
	c, err := shim.Start(ctx, shim.StartOptions{
		Binary: s.binary, Dir: s.dir(podID), PodID: podID, SharePID: opts.SharePID, PodCgroup: opts.InitCgroup, PodUserNS: opts.UserNS,
		Args: s.shimArgs(opts.RuntimeHandler),
	})
	if err != nil {
		return nil, err
	}
	return s.wrap(c), nil
}

func (s shims) Connect(ctx context.Context, podID string) (cri.Shim, error) {
	c, err := shim.Connect(ctx, s.dir(podID))
	if err != nil {
		return nil, err
	}
	return s.wrap(c), nil
}

// States asks the pod's shim once for the state of every container it
// runs, by ID.
func (s shims) States(ctx context.Context, podID string) (map[string]cri.ContainerState, error) {
	states, err := shim.Dial(s.dir(podID)).ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]cri.ContainerState, len(states))
	for _, st := range states {
		out[st.ID] = toState(st)
	}
	return out, nil
}

func (s shims) Stop(ctx context.Context, podID, initCgroup string) error {
	dir := s.dir(podID)
	if c, err := shim.Connect(ctx, dir); err == nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := c.Shutdown(sctx); err != nil {
			return fmt.Errorf("shim of pod %s: %w", podID, err)
		}
	} else {
		// Nobody answers: the shim died, or never started. Kill what may
		// be left: the shim if it hangs, the pod init it started.
		if pid := shim.PidFromFile(dir); pid > 1 && shim.IsShimProcess(pid, dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if initCgroup != "" {
			if err := s.executor().KillCgroup(ctx, initCgroup); err != nil {
				return fmt.Errorf("pod init of pod %s: %w", podID, err)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove shim dir of pod %s: %w", podID, err)
	}
	return nil
}

func (s shims) Running(podID string) bool {
	dir := s.dir(podID)
	pid := shim.PidFromFile(dir)
	return pid > 1 && shim.IsShimProcess(pid, dir)
}

func (s shims) Died(podID string) bool {
	// A shim that shuts down removes its pid file last.
	dir := s.dir(podID)
	pid := shim.PidFromFile(dir)
	return pid > 0 && !shim.IsShimProcess(pid, dir)
}

func (s shims) WaitExit(ctx context.Context, podID string, pid int) error {
	return shim.WaitExit(ctx, s.dir(podID), pid)
}

// Lost ends container id of a pod whose shim died: the executor (its CLI)
// kills every process of its cgroup and waits for its init, and the exit is
// recorded where the shim would have, so it is reported once and for good.
func (s shims) Lost(ctx context.Context, podID, id string) (cri.ContainerState, error) {
	if s.Running(podID) {
		return cri.ContainerState{}, errdefs.Unavailable("the shim of pod %s runs but does not answer", podID)
	}
	if st, ok := s.ExitState(podID, id); ok {
		return st, nil
	}
	rec := shim.ExitRecord{
		ID: id, ExitCode: 255, Reason: cri.ReasonShimLost,
	}
	if st, err := s.runtimeFor(id).State(ctx, id); err == nil {
		rec.Pid = st.Pid
		if st.Status != specs.StateStopped {
			// SIGKILLed by us, as the exit code says.
			rec.ExitCode, rec.Signal = 128+int(syscall.SIGKILL), int(syscall.SIGKILL)
		}
	} else if !errdefs.IsNotFound(err) {
		return cri.ContainerState{}, fmt.Errorf("container %s of a lost shim: %w", id, err)
	}
	if err := s.Cleanup(ctx, id); err != nil {
		return cri.ContainerState{}, err
	}
	rec.FinishedAt = time.Now().UTC()
	dir := s.containerDir(id)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return cri.ContainerState{}, err
	}
	if err := shim.WriteExitFile(dir, rec); err != nil {
		return cri.ContainerState{}, fmt.Errorf("container %s of a lost shim: %w", id, err)
	}
	st, _ := s.ExitState(podID, id)
	return st, nil
}

func (s shims) ExitState(podID, id string) (cri.ContainerState, bool) {
	rec, err := shim.ReadExitFile(s.containerDir(id))
	if err != nil {
		return cri.ContainerState{}, false
	}
	st := cri.ContainerState{
		Status: cri.StateExited, Pid: rec.Pid, ExitCode: int32(rec.ExitCode),
		StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt, OOMKilled: rec.OOMKilled, Reason: rec.Reason,
	}
	if st.Reason == "" {
		st.Reason = shim.ExitReason(rec.ExitCode, rec.OOMKilled)
	}
	if rec.Reason == cri.ReasonShimLost {
		st.Message = "the pod's shim died; Skiff ended the container's processes (its start time and logs after that are lost)"
	}
	return st, true
}

// Cleanup has the runtime of container id (the executor, or the OCI
// runtime of its pod's handler) force-delete what it still holds of it.
// After a live shim deleted the container there is nothing left, and
// RuntimeCLI.Delete finds that out with a stat, without running anything.
func (s shims) Cleanup(ctx context.Context, id string) error {
	if err := s.runtimeFor(id).Delete(ctx, id, true); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime state of container %s: %w", id, err)
	}
	return nil
}

// shimClient adapts a shim client to the CRI layer's view of a shim.
type shimClient struct {
	c *shim.Client
	s shims
}

func toState(st shim.ContainerState) cri.ContainerState {
	out := cri.ContainerState{
		Pid: st.Pid, ExitCode: int32(st.ExitCode), StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		OOMKilled: st.OOMKilled, Reason: st.Reason,
	}
	switch st.Status {
	case shim.StatusCreated:
		out.Status = cri.StateCreated
	case shim.StatusRunning:
		out.Status = cri.StateRunning
	case shim.StatusExited:
		out.Status = cri.StateExited
		if out.Reason == "" {
			out.Reason = shim.ExitReason(st.ExitCode, st.OOMKilled)
		}
	default:
		out.Status = cri.StateUnknown
	}
	return out
}

func (sc *shimClient) Create(ctx context.Context, req cri.CreateRequest) (cri.ContainerState, error) {
	st, err := sc.c.CreateContainer(ctx, shim.CreateRequest{
		ID: req.ID, Spec: req.Spec, Rootfs: req.Spec.Root.Path, LogPath: req.LogPath,
		StateDir: sc.s.containerDir(req.ID), Stdin: req.Stdin, StdinOnce: req.StdinOnce, Tty: req.Tty,
	})
	if err != nil {
		return cri.ContainerState{}, err
	}
	return toState(st), nil
}

func (sc *shimClient) Start(ctx context.Context, id string) error {
	_, err := sc.c.StartContainer(ctx, id)
	return err
}

func (sc *shimClient) Kill(ctx context.Context, id string, sig int, all bool) error {
	return sc.c.KillContainer(ctx, id, syscall.Signal(sig), all)
}

func (sc *shimClient) State(ctx context.Context, id string) (cri.ContainerState, error) {
	st, err := sc.c.ContainerState(ctx, id)
	if err != nil {
		return cri.ContainerState{}, err
	}
	return toState(st), nil
}

func (sc *shimClient) Wait(ctx context.Context, id string) (cri.ContainerState, error) {
	st, err := sc.c.Wait(ctx, id)
	if err != nil {
		return cri.ContainerState{}, err
	}
	return toState(st), nil
}

func (sc *shimClient) Delete(ctx context.Context, id string) error {
	return sc.c.DeleteContainer(ctx, id)
}

func (sc *shimClient) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, int32, error) {
	res, err := sc.c.ExecSync(ctx, shim.ExecSyncRequest{ID: id, Cmd: cmd, Timeout: timeout})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, 0, fmt.Errorf("command %q timed out after %v: %w", cmd, timeout, err)
		}
		return nil, nil, 0, err
	}
	return res.Stdout, res.Stderr, int32(res.ExitCode), nil
}

func (sc *shimClient) ReopenLog(ctx context.Context, id string) error { return sc.c.ReopenLog(ctx, id) }

func (sc *shimClient) UpdateResources(ctx context.Context, id string, res *specs.LinuxResources) error {
	return sc.c.UpdateResources(ctx, id, res)
}

func (sc *shimClient) List(ctx context.Context) ([]string, error) {
	states, err := sc.c.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(states))
	for _, st := range states {
		ids = append(ids, st.ID)
	}
	return ids, nil
}

func (sc *shimClient) InitPID() int { return sc.c.InitPid() }

func (sc *shimClient) Pid() int { return sc.c.Pid() }

func streamIO(ctx context.Context, st cri.Stdio) shim.StreamIO {
	sio := shim.StreamIO{Stdin: st.Stdin}
	if st.Stdout != nil {
		sio.Stdout = st.Stdout
	}
	if st.Stderr != nil {
		sio.Stderr = st.Stderr
	}
	if st.Resize != nil {
		ch := make(chan shim.TermSize)
		go func() {
			defer close(ch)
			for sz := range st.Resize {
				select {
				case ch <- shim.TermSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}()
		sio.Resize = ch
	}
	return sio
}

func (sc *shimClient) Exec(ctx context.Context, id string, cmd []string, st cri.Stdio) (int32, error) {
	code, err := sc.c.Exec(ctx, shim.ExecRequest{ID: id, Cmd: cmd, Tty: st.Tty}, streamIO(ctx, st))
	return int32(code), err
}

func (sc *shimClient) Attach(ctx context.Context, id string, st cri.Stdio) error {
	return sc.c.Attach(ctx, id, streamIO(ctx, st))
}

func (sc *shimClient) Close() error { return nil }
