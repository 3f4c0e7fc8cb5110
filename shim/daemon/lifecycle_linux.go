package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
	"github.com/skiffcri/skiff/shim/crilog"
)

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

func (d *daemon) create(ctx context.Context, req *shim.CreateRequest) (shim.ContainerState, error) {
	id := req.ID
	if !validID(id) {
		return shim.ContainerState{}, errdefs.InvalidArgument("container id %q", id)
	}
	if req.Spec == nil || req.Spec.Process == nil {
		return shim.ContainerState{}, errdefs.InvalidArgument("container %q: spec without process", id)
	}
	if req.Tty != req.Spec.Process.Terminal {
		return shim.ContainerState{}, errdefs.InvalidArgument("container %q: tty %v but spec.process.terminal %v", id, req.Tty, req.Spec.Process.Terminal)
	}
	c := &container{
		id:        id,
		pidfd:     -1,
		process:   req.Spec.Process,
		stateDir:  req.StateDir,
		logPath:   req.LogPath,
		createdAt: time.Now(),
		status:    shim.StatusCreated,
		exited:    make(chan struct{}),
		ioDone:    make(chan struct{}),
	}
	if c.stateDir == "" {
		c.stateDir = shim.ContainerStateDir(d.cfg.Dir, id)
		c.ownDir = true
	}
	// Reserve the id before the slow part so a concurrent create of the
	// same id fails instead of racing.
	d.mu.Lock()
	if _, ok := d.containers[id]; ok || d.reserved[id] {
		d.mu.Unlock()
		return shim.ContainerState{}, errdefs.AlreadyExists("container %q in shim of pod %q", id, d.cfg.PodID)
	}
	d.reserved[id] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.reserved, id)
		d.mu.Unlock()
	}()

	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return shim.ContainerState{}, fmt.Errorf("container %q: %w", id, err)
	}
	// An exit record left from an earlier container of the same id would
	// be mistaken for this one's exit.
	if err := os.Remove(filepath.Join(c.stateDir, shim.ExitFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return shim.ContainerState{}, fmt.Errorf("container %q: %w", id, err)
	}
	if req.LogPath != "" {
		w, err := crilog.Open(req.LogPath, crilog.Options{})
		if err != nil {
			return shim.ContainerState{}, errdefs.InvalidArgument("container %q log: %v", id, err)
		}
		c.log = w
	}
	p, err := newPipes(req.Stdin, req.Tty)
	if err != nil {
		c.closeLog()
		return shim.ContainerState{}, fmt.Errorf("container %q stdio: %w", id, err)
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
		return shim.ContainerState{}, fmt.Errorf("create container %q: %w", id, err)
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
	reason := shim.ExitReason(code, oom)
	c.mu.Lock()
	rec := shim.ExitRecord{
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
	if err := shim.WriteExitFile(c.stateDir, rec); err != nil {
		// Still publish: the live shim's answer is right even though a
		// restarted daemon without the shim would not find it.
		d.cfg.Logger.Error("write exit record", "id", c.id, "dir", c.stateDir, "error", err)
	}
	c.mu.Lock()
	c.exit = rec
	c.status = shim.StatusExited
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

func (d *daemon) start(ctx context.Context, id string) (shim.ContainerState, error) {
	c, err := d.get(id)
	if err != nil {
		return shim.ContainerState{}, err
	}
	c.mu.Lock()
	if c.status != shim.StatusCreated {
		st := c.status
		c.mu.Unlock()
		return shim.ContainerState{}, errdefs.FailedPrecondition("container %q is %s, not created", id, st)
	}
	// Holding c.mu across Start orders it before a quick exit: watch
	// cannot mark the container exited before it is marked running.
	err = d.reaper.paused(func() error { return d.cfg.Runtime.Start(ctx, id) })
	if err == nil {
		c.status = shim.StatusRunning
		c.exit.StartedAt = time.Now()
	}
	c.mu.Unlock()
	if err != nil {
		return shim.ContainerState{}, fmt.Errorf("start container %q: %w", id, err)
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

func (d *daemon) wait(ctx context.Context, id string) (shim.ContainerState, error) {
	c, err := d.get(id)
	if err != nil {
		return shim.ContainerState{}, err
	}
	select {
	case <-c.exited:
		return c.snapshot(), nil
	case <-ctx.Done():
		return shim.ContainerState{}, ctx.Err()
	}
}

// delete forgets an exited or never started container. A created one is
// killed first; a running one must be stopped by the caller.
func (d *daemon) delete(ctx context.Context, id string) error {
	c, err := d.get(id)
	if err != nil {
		return err
	}
	c.deleting.Lock()
	defer c.deleting.Unlock()
	// A delete that ran while this one waited has done it all.
	if _, err := d.get(id); err != nil {
		return err
	}
	switch c.snapshot().Status {
	case shim.StatusRunning:
		return errdefs.FailedPrecondition("container %q is running", id)
	case shim.StatusCreated:
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

// update applies new resource limits to a container through the Runtime,
// whatever its state: the cgroup of an exited container stays until delete,
// as it did when skiffd wrote it.
func (d *daemon) update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if _, err := d.get(id); err != nil {
		return err
	}
	// The Runtime's errors name the container and its cgroup. Paused: a
	// Runtime may run a helper (an OCI runtime's "update") and wait for it.
	return d.reaper.paused(func() error { return d.cfg.Runtime.Update(ctx, id, res) })
}
