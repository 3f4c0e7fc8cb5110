package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

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

	extra := []*os.File{mntns}
	userns, err := containerUserNS(base + "user")
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	var nsenter string
	if userns != nil {
		defer userns.Close()
		if nsenter, err = e.nsenterPath(); err != nil {
			return nil, fmt.Errorf("exec in container %q (in a user namespace): %w", id, err)
		}
		initBin, err := e.openInit()
		if err != nil {
			return nil, fmt.Errorf("exec in container %q: %w", id, err)
		}
		defer initBin.Close()
		extra = append(extra, userns, initBin)
	}
	if !initAlive(st) {
		return nil, errdefs.FailedPrecondition("container %q is not running", id)
	}

	cg, err := e.cgroup(st)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: cgroup: %w", id, err)
	}
	// The process moves itself into the v1 hierarchies (see Create).
	var selfV1 bool
	var taskFDs []int
	if cg != nil && userns == nil {
		var tasks []*os.File
		if tasks, selfV1, err = openTaskFiles(cg); err != nil {
			return nil, fmt.Errorf("exec in container %q: cgroup: %w", id, err)
		}
		defer closeFiles(tasks)
		for _, f := range tasks {
			taskFDs = append(taskFDs, 3+len(extra)+2)
			extra = append(extra, f)
		}
	}
	l, err := e.newLaunch(stdio, p.Terminal, extra...)
	if err != nil {
		return nil, err
	}
	defer l.close()
	l.addEnvFD(envMountNS, 2)
	if userns != nil {
		// Joined only: the other namespaces are the container's.
		userNSJoin(l, nsenter, 0, 3, 4)
	}
	cloned, err := l.start(ctx, e.logger(), join, cg)
	if err != nil {
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
	if err := l.sendConfig(&initConfig{Exec: true, Spec: &spec, Process: &proc2, TaskFDs: taskFDs}); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	// While the exec init reads its config and joins the mount namespace.
	if cg != nil {
		if err := joinCgroup(cg, cloned, selfV1, pid); err != nil {
			return nil, fmt.Errorf("exec in container %q: join cgroup: %w", id, err)
		}
	}
	if err := l.awaitConfigured(ctx); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	if err := e.setProcessLimits(pid, &proc2); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	if err := l.sendJoined(nil); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	console, err := l.await(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	return &Process{Pid: pid, Console: console, cmd: l.cmd}, nil
}

// containerUserNS opens the user namespace at path when it is not this
// process's own; nil when it is.
func containerUserNS(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &theirs); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Stat("/proc/self/ns/user", &ours); err != nil {
		f.Close()
		return nil, err
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		f.Close()
		return nil, nil
	}
	return f, nil
}
