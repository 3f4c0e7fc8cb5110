package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/phases"
	"github.com/skiffcri/skiff/oci/cgroups"
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
	// NSEnterPath is skiff-nsenter, the pre-runtime stage that joins a
	// user namespace (package nsenter); default: next to InitPath, or to
	// this executable.
	NSEnterPath string
	// NewCgroup opens a container's cgroup; nil runs containers without
	// cgroup placement or limits.
	NewCgroup CgroupFactory
	// Logger receives warnings (e.g. a clamped oom_score_adj); nil means
	// slog.Default().
	Logger *slog.Logger

	// cgroupHost is the host's cgroup mounts, which an init whose spec
	// mounts a cgroup filesystem gets (see hostCgroupMounts).
	cgroupHost cgroups.Host
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

// Create creates container id: its init runs in all its namespaces and
// its cgroup, with the rootfs pivoted and the process's credentials set,
// blocked at the start barrier until Start.
func (e *Executor) Create(ctx context.Context, id string, b Bundle, stdio IO) (c *Container, retErr error) {
	ph := phases.Start()
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
	if err := validateHooks(spec.Hooks); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	hooks := spec.Hooks
	if hooks == nil {
		hooks = &specs.Hooks{}
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
	// The bundle the hooks are told about: the caller's, or our state
	// directory, whose config.json names the rootfs.
	bundle := b.Path
	if bundle == "" {
		bundle = dir
	}
	hookState := &specs.State{
		Version: specs.Version, ID: id, Status: specs.StateCreating, Bundle: bundle, Annotations: spec.Annotations,
	}
	// createHooksMayHaveRun is set once a create hook may have run: then
	// a failed create runs the poststop hooks, as the runtime spec's
	// lifecycle asks, so that hooks can undo what they did.
	createHooksMayHaveRun := false
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			if createHooksMayHaveRun {
				e.runPoststop(id, hooks.Poststop, hookState)
			}
			os.RemoveAll(dir)
		}
	}()
	kept := spec
	if b.Path == "" {
		// The state directory is the bundle hooks are told about: its
		// config.json names the rootfs, as a bundle's does.
		c := *spec
		c.Root = &specs.Root{Path: rootfs}
		if spec.Root != nil {
			c.Root.Readonly = spec.Root.Readonly
		}
		kept = &c
	}
	specJSON, err := json.Marshal(kept)
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

	// The init's fds after config (3) and sync (4): the FIFO, then, for a
	// container in a user namespace, the namespace and the mount sources.
	extra := []*os.File{fifo}
	var (
		userns  *os.File
		nsenter string
	)
	if plan.joinUser != "" {
		if nsenter, err = e.nsenterPath(); err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
		if userns, err = os.Open(plan.joinUser); err != nil {
			return nil, fmt.Errorf("container %q: open user namespace: %w", id, err)
		}
		defer userns.Close()
		initBin, err := e.openInit()
		if err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
		defer initBin.Close()
		extra = append(extra, userns, initBin)
	}
	var mountFDs []int
	if plan.joinUser != "" || plan.newUser {
		srcs, err := openMountSources(spec, userns)
		if err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
		defer closeFiles(srcs)
		mountFDs = make([]int, len(srcs))
		for i, f := range srcs {
			mountFDs[i] = -1
			if f != nil {
				mountFDs[i] = 3 + len(extra) + 2
				extra = append(extra, f)
			}
		}
	}
	// With startContainer or poststart hooks, Start waits until the init
	// has run the first and exec'd: it reads the result FIFO to its end.
	startResult := len(hooks.StartContainer)+len(hooks.Poststart) > 0
	resultIdx := -1
	if startResult {
		resultPath := filepath.Join(dir, resultFifoName)
		if err := unix.Mkfifo(resultPath, 0o600); err != nil {
			return nil, &os.PathError{Op: "mkfifo", Path: resultPath, Err: err}
		}
		result, err := os.OpenFile(resultPath, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer result.Close()
		resultIdx = 2 + len(extra)
		extra = append(extra, result)
	}
	ph.Done("prepare")
	// The cgroup exists before the init, so that the init can be cloned
	// straight into it and move its thread into the v1 hierarchies.
	var cg CgroupManager
	if e.NewCgroup != nil && spec.Linux.CgroupsPath != "" {
		res := spec.Linux.Resources
		if res == nil {
			res = &specs.LinuxResources{} // non-nil: create, not reopen
		}
		if cg, err = e.NewCgroup(spec.Linux.CgroupsPath, res); err != nil {
			return nil, fmt.Errorf("container %q: cgroup: %w", id, err)
		}
		undo = append(undo, func() {
			// The caller's ctx may be cancelled; undo with a detached one.
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if createHooksMayHaveRun {
				// A create hook's processes are in the cgroup too, and
				// outlive the init when the PID namespace is shared.
				_ = cg.KillAll(dctx, unix.SIGKILL)
			}
			cg.Destroy(dctx)
		})
	}
	// selfV1: the init moves itself into the v1 hierarchies, except when
	// it joins a user namespace: the pre-runtime stage that stays its
	// parent belongs in the cgroup too.
	var selfV1 bool
	var taskFDs []int
	if cg != nil && plan.joinUser == "" {
		var tasks []*os.File
		if tasks, selfV1, err = openTaskFiles(cg); err != nil {
			return nil, fmt.Errorf("container %q: cgroup: %w", id, err)
		}
		defer closeFiles(tasks)
		for _, f := range tasks {
			taskFDs = append(taskFDs, 3+len(extra)+2)
			extra = append(extra, f)
		}
	}
	ph.Done("cgroup")
	l, err := e.newLaunch(stdio, spec.Process.Terminal, extra...)
	if err != nil {
		return nil, err
	}
	defer l.close()
	l.addEnvFD(envFifoFD, 2)
	if resultIdx >= 0 {
		l.addEnvFD(envResultFD, resultIdx)
	}
	l.cmd.SysProcAttr.Cloneflags = plan.cloneFlags
	if plan.joinUser != "" {
		userNSJoin(l, nsenter, plan.unshare, 3, 4)
	}
	if plan.newUser {
		newUserNS(l.cmd.SysProcAttr, spec.Linux)
	}
	cloned, err := l.start(ctx, e.logger(), plan.join, cg)
	if err != nil {
		return nil, fmt.Errorf("start init of container %q: %w", id, err)
	}
	l.closeChildFiles()
	fifo.Close()
	undo = append(undo, func() {
		l.cmd.Process.Kill()
		l.cmd.Wait()
	})
	// pids are the processes to put in the cgroup: the one started and,
	// when the pre-runtime stage forked the init into a new PID namespace,
	// the init (the stage stays its parent, mirroring its exit).
	pid := l.cmd.Process.Pid
	pids := []int{pid}
	if plan.unshare&unix.CLONE_NEWPID != 0 {
		if pid, err = l.readInitPid(ctx); err != nil {
			return nil, fmt.Errorf("start init of container %q: %w", id, err)
		}
		pids = append(pids, pid)
		undo = append(undo, func() { unix.Kill(pid, unix.SIGKILL) })
	}

	ph.Done("start_init")
	hookState.Pid = pid
	//lint:ignore SA1019 prestart hooks are still run, as the spec asks
	runtimeHooks := len(hooks.Prestart)+len(hooks.CreateRuntime) > 0
	cfg := &initConfig{
		Spec:         spec,
		Process:      spec.Process,
		Rootfs:       rootfs,
		NewMountNS:   (plan.cloneFlags|plan.unshare)&unix.CLONE_NEWNS != 0,
		NewUTSNS:     plan.newUTS,
		NewCgroupNS:  plan.newCgroup,
		NewNetNS:     plan.newNet,
		MountFDs:     mountFDs,
		TaskFDs:      taskFDs,
		RuntimeHooks: runtimeHooks,
		HookState:    hookState,
	}
	if runtimeHooks {
		// Called when the init has made its mounts and stopped before
		// pivot_root: we are in the runtime namespace.
		l.onHooks = func() error {
			//lint:ignore SA1019 prestart hooks are still run, as the spec asks
			if err := runHooks(ctx, hookPrestart, hooks.Prestart, hookState); err != nil {
				return err
			}
			return runHooks(ctx, hookCreateRuntime, hooks.CreateRuntime, hookState)
		}
	}
	createHooksMayHaveRun = runtimeHooks || len(hooks.CreateContainer) > 0
	if err := l.sendConfig(cfg); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	ph.Done("send_config")
	// The state is written while the init sets itself up; waitState
	// runs first of the undos, before the state directory goes.
	stateDone := make(chan error, 1)
	go func() {
		start, _, err := procStartTime(pid)
		if err != nil {
			stateDone <- fmt.Errorf("container %q: read init start time: %w", id, err)
			return
		}
		st := &State{
			State: specs.State{
				Version:     specs.Version,
				ID:          id,
				Status:      StatusCreated,
				Pid:         pid,
				Bundle:      bundle,
				Annotations: spec.Annotations,
			},
			Created:       time.Now().UTC(),
			InitStartTime: start,
			Rootfs:        rootfs,
			CgroupsPath:   spec.Linux.CgroupsPath,
			SharedPidNS:   plan.joinPid,
			Hooks:         hasHooks(spec.Hooks),
			StartResult:   startResult,
		}
		if err := writeState(dir, st); err != nil {
			stateDone <- fmt.Errorf("container %q: write state: %w", id, err)
			return
		}
		stateDone <- nil
	}()
	waitState := sync.OnceValue(func() error { return <-stateDone })
	undo = append(undo, func() { waitState() })
	// While the init sets itself up, up to its first step that needs
	// them (see cgroupBarrier).
	if cg != nil {
		for _, p := range pids {
			if err := joinCgroup(cg, cloned, selfV1, p); err != nil {
				return nil, fmt.Errorf("container %q: join cgroup: %w", id, err)
			}
		}
	}
	var hostCgroups []cgroups.Mount
	if mountsCgroup(spec.Mounts) {
		if hostCgroups, err = e.hostCgroupMounts(); err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
	}
	if err := l.awaitConfigured(ctx); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if err := e.setProcessLimits(pid, spec.Process); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if err := l.sendJoined(hostCgroups); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	ph.Done("join")
	console, err := l.await(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", id, err)
	}
	ph.Done("init_setup")
	if err := waitState(); err != nil {
		if console != nil {
			console.Close()
		}
		return nil, err
	}
	ph.Done("state")
	ph.Log(ctx, e.logger(), "create phases", slog.String("id", id))
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
	var result *os.File
	if st.StartResult {
		// Opened before the barrier is released, so that its end is the
		// init's execve or exit, not a race with them.
		resultPath := filepath.Join(dir, resultFifoName)
		if result, err = os.OpenFile(resultPath, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("container %q: open start result: %w", id, err)
		}
		defer result.Close()
	}
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return &os.PathError{Op: "write", Path: fifoPath, Err: err}
	}
	if err := os.Remove(fifoPath); err != nil {
		return fmt.Errorf("container %q: remove start fifo: %w", id, err)
	}
	if result == nil {
		return nil
	}
	msg, err := readStartResult(ctx, result)
	if err != nil {
		return fmt.Errorf("container %q: wait for the process to start: %w", id, err)
	}
	os.Remove(result.Name())
	if msg != "" {
		return fmt.Errorf("start container %q: %s", id, msg)
	}
	spec, err := readSpec(dir, id)
	if err != nil {
		return err
	}
	if spec.Hooks != nil && len(spec.Hooks.Poststart) > 0 {
		hs := st.State
		hs.Status = StatusRunning
		// A failed poststart hook is logged, not fatal: the process runs.
		if err := runHooks(ctx, hookPoststart, spec.Hooks.Poststart, &hs); err != nil {
			e.logger().Warn("poststart hook failed", "container", id, "err", err)
		}
	}
	return nil
}

// readStartResult reads the start result FIFO to its end: nothing when the
// init exec'd the process, the error of a startContainer hook otherwise.
func readStartResult(ctx context.Context, f *os.File) (string, error) {
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	return string(b), nil
}

// readSpec loads the spec Create kept in dir/config.json.
func readSpec(dir, id string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("container %q: read spec: %w", id, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("container %q: decode spec: %w", id, err)
	}
	return &spec, nil
}

// runPoststop runs the poststop hooks of a container that is gone; their
// failures are logged, as the runtime spec asks. The hooks' timeouts bound
// them; so does a minute, so that a hook without one cannot hang a delete.
func (e *Executor) runPoststop(id string, hooks []specs.Hook, st *specs.State) {
	if len(hooks) == 0 {
		return
	}
	hs := *st
	hs.Status, hs.Pid = StatusStopped, 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runHooks(ctx, hookPoststop, hooks, &hs); err != nil {
		e.logger().Warn("poststop hook failed", "container", id, "err", err)
	}
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

// Update applies new resource limits to the container's cgroup, as
// UpdateContainerResources asks: fields res leaves nil keep their value.
// It fails with errdefs.ErrNotFound when the container or its cgroup is
// gone, and errdefs.ErrFailedPrecondition when it has no cgroup.
func (e *Executor) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if res == nil {
		return errdefs.InvalidArgument("update container %q: no resources", id)
	}
	dir, err := e.dir(id)
	if err != nil {
		return err
	}
	st, err := readState(dir, id)
	if err != nil {
		return err
	}
	cg, err := e.cgroup(st)
	if err != nil {
		return fmt.Errorf("container %q: cgroup: %w", id, err)
	}
	if cg == nil {
		return errdefs.FailedPrecondition("container %q has no cgroup", id)
	}
	if err := checkMemoryDecrease(cg, res); err != nil {
		return fmt.Errorf("update container %q: %w", id, err)
	}
	return cg.Set(res)
}

// memoryUser is a CgroupManager that knows the memory its processes hold
// (oci/cgroups does).
type memoryUser interface {
	WorkingSet() (uint64, error)
}

// checkMemoryDecrease refuses a memory limit below what the container
// holds now: on cgroup v2 the kernel would OOM-kill it to get there, on v1
// it fails with EBUSY after reclaiming what it could. The figure is the
// working set (usage less inactive page cache), which the kernel can
// reclaim and the kubelet checks too.
func checkMemoryDecrease(cg CgroupManager, res *specs.LinuxResources) error {
	if res.Memory == nil || res.Memory.Limit == nil || *res.Memory.Limit <= 0 {
		return nil
	}
	mu, ok := cg.(memoryUser)
	if !ok {
		return nil
	}
	ws, err := mu.WorkingSet()
	if err != nil {
		return fmt.Errorf("read memory usage: %w", err)
	}
	if limit := uint64(*res.Memory.Limit); ws > limit {
		return errdefs.FailedPrecondition("memory limit %d is below the %d bytes the container uses now: lower it once the usage has dropped", limit, ws)
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
	if st.Hooks {
		// The poststop hooks run once the container is gone, before its
		// state directory (which may be the bundle they are told about).
		spec, err := readSpec(dir, id)
		if err != nil {
			e.logger().Warn("poststop hooks not run", "container", id, "err", err)
		} else if spec.Hooks != nil {
			e.runPoststop(id, spec.Hooks.Poststop, &st.State)
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
