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
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/oci/cgroups"
)

// launch holds the plumbing shared by Create and Exec.
type launch struct {
	cmd        *exec.Cmd
	cfgW       *os.File
	sync       *net.UnixConn
	childFiles []*os.File
	// onHooks runs the hooks the init asks for (msgHooks) before it
	// pivots; nil when the spec has none for the runtime to run.
	onHooks func() error
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
	// GOMAXPROCS: the init is one locked thread's work, and a runtime told
	// its GOMAXPROCS neither looks for its CPU limit in the cgroup
	// hierarchy (a parse of mountinfo, which grows with every pod) nor
	// stops the world to change it.
	env := []string{"GOMAXPROCS=1", envConfigFD + "=3", envSyncFD + "=4"}
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

// start starts the init (see startInit) in cgroup cg, if not nil: cloned
// straight into its cgroup2 directory (clone3 with CLONE_INTO_CGROUP,
// Linux 5.7) when cg is a cgroupJoiner, which spares the kernel a
// migration, and otherwise, or when the kernel refuses the clone (an older
// kernel, a seccomp filter without clone3), started outside it. It reports
// whether the init was cloned into cg; joinCgroup then completes its
// membership.
func (l *launch) start(ctx context.Context, log *slog.Logger, join []nsJoin, cg CgroupManager) (cloned bool, err error) {
	if j, ok := cg.(cgroupJoiner); ok {
		dir, err := j.OpenCloneTarget()
		if err != nil {
			return false, err
		}
		if dir != nil {
			defer dir.Close()
			// A copy: a Cmd cannot be started twice, even after a failed
			// Start.
			attr := *l.cmd.SysProcAttr
			attr.UseCgroupFD, attr.CgroupFD = true, int(dir.Fd())
			c := &exec.Cmd{
				Path: l.cmd.Path, Args: l.cmd.Args, Env: l.cmd.Env, Dir: l.cmd.Dir,
				Stdin: l.cmd.Stdin, Stdout: l.cmd.Stdout, Stderr: l.cmd.Stderr,
				ExtraFiles: l.cmd.ExtraFiles, SysProcAttr: &attr,
			}
			err := startInit(c, join)
			if err == nil {
				l.cmd = c
				return true, nil
			}
			log.DebugContext(ctx, "clone into cgroup refused, starting the init outside it", "cgroup", dir.Name(), "err", err)
		}
	}
	return false, startInit(l.cmd, join)
}

// openTaskFiles opens cg's v1 task files for an init that moves itself
// into them (see initConfig.TaskFDs); ok is false when cg cannot be joined
// so, and its v1 hierarchies are then the parent's to join.
func openTaskFiles(cg CgroupManager) (files []*os.File, ok bool, err error) {
	j, ok := cg.(cgroupJoiner)
	if !ok {
		return nil, false, nil
	}
	files, err = j.OpenTaskFiles()
	return files, err == nil, err
}

// joinCgroup moves pid into the parts of cg it is not in yet: the cgroup2
// directory unless start cloned it there, the v1 hierarchies unless the
// init moves itself (selfV1).
func joinCgroup(cg CgroupManager, cloned, selfV1 bool, pid int) error {
	j, ok := cg.(cgroupJoiner)
	switch {
	case !ok || !cloned && !selfV1:
		return cg.Apply(pid)
	case cloned && selfV1:
		return nil
	case cloned:
		return j.ApplyV1(pid)
	default:
		return j.ApplyUnified(pid)
	}
}

// sendConfig writes the init's configuration and closes the pipe.
func (l *launch) sendConfig(cfg *initConfig) error {
	cfg.SpecPart = newInitSpec(cfg.Spec)
	err := json.NewEncoder(l.cfgW).Encode(cfg)
	l.cfgW.Close()
	if err != nil {
		return fmt.Errorf("send init config: %w", err)
	}
	return nil
}

// awaitConfigured waits until the init has read its config
// (msgConfigured): its Go runtime, which raises its own RLIMIT_NOFILE soft
// limit at start, is then up, and the process's rlimits may be set.
func (l *launch) awaitConfigured(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { l.sync.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 64<<10)
	n, err := l.sync.Read(buf)
	if errors.Is(err, io.EOF) {
		n, err = 0, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read from init: %w", err)
	}
	if n == 0 {
		return errors.New("init exited before reading its config")
	}
	var m syncMsg
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return fmt.Errorf("bad message from init: %w", err)
	}
	switch m.Type {
	case msgConfigured:
		return nil
	case msgError:
		return errors.New(m.Error)
	}
	return fmt.Errorf("message %q from init before %q", m.Type, msgConfigured)
}

// sendJoined tells the init it is in its cgroup, with its limits set, and
// gives it the host's cgroup mounts it needs, if any (see cgroupBarrier).
func (l *launch) sendJoined(hostCgroups []cgroups.Mount) error {
	b, _ := json.Marshal(syncMsg{Type: msgJoined, CgroupMounts: hostCgroups})
	if _, err := l.sync.Write(b); err != nil {
		return fmt.Errorf("tell the init it joined its cgroup: %w", err)
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
		case msgHooks:
			if l.onHooks == nil {
				return fail(errors.New("init asked for hooks the spec does not have"))
			}
			if err := l.onHooks(); err != nil {
				return fail(err)
			}
			b, _ := json.Marshal(syncMsg{Type: msgResume})
			if _, err := l.sync.Write(b); err != nil {
				return fail(fmt.Errorf("resume init after hooks: %w", err))
			}
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
