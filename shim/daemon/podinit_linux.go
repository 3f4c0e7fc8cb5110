package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/internal/procwait"
	"github.com/skiffcri/skiff/oci/nsenter"
)

// execProcess adapts an exec.Cmd the shim started itself to Process.
// execProcess is a process the shim started itself. pid, when set, is the
// process it stands for (the pod init that the user namespace stage forked).
type execProcess struct {
	cmd *exec.Cmd
	pid int
}

func (p execProcess) Pid() int {
	if p.pid != 0 {
		return p.pid
	}
	return p.cmd.Process.Pid
}
func (p execProcess) ChildPid() int     { return p.cmd.Process.Pid }
func (p execProcess) Console() *os.File { return nil }
func (p execProcess) Wait() (ExitStatus, error) {
	// Parked in the poller until the pod init exits, not in a thread.
	_ = procwait.Exited(p.cmd.Process.Pid)
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitStatus{}, err
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}, nil
	}
	return ExitStatus{Code: ws.ExitStatus()}, nil
}

// startPodInit starts the pod's init as PID 1 of a new PID namespace: the
// pre-runtime stage beside binary (skiff-nsenter), which is a small C
// init in that role, not a second Go runtime per pod. The pod's containers
// join its namespace (/proc/<pid>/ns/pid, or the pinned copy skiffd makes
// of it) and the init reaps their orphans, as a pause container would.
func startPodInit(binary, userns string) (execProcess, error) {
	stage, err := nsenter.Beside(binary)
	if err != nil {
		return execProcess{}, fmt.Errorf("start pod init: %w", err)
	}
	cmd := exec.Command(stage)
	cmd.Args[0] = "skiff-pod-init"
	cmd.Dir = "/"
	cmd.Env = []string{nsenter.EnvPodInit + "=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if userns == "" {
		if err := cmd.Start(); err != nil {
			return execProcess{}, fmt.Errorf("start pod init: %w", err)
		}
		return execProcess{cmd: cmd}, nil
	}
	// In a user namespace the PID namespace must be the user namespace's,
	// so the stage joins it, unshares it and forks the init; it reports
	// the init's pid on a pipe.
	ns, err := os.Open(userns)
	if err != nil {
		return execProcess{}, fmt.Errorf("start pod init: %w", err)
	}
	defer ns.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return execProcess{}, fmt.Errorf("start pod init: %w", err)
	}
	defer r.Close()
	cmd.SysProcAttr.Cloneflags = 0
	cmd.ExtraFiles = []*os.File{ns, w}
	cmd.Env = append(cmd.Env,
		nsenter.EnvUserNS+"=3",
		nsenter.EnvUnshare+"="+strconv.Itoa(syscall.CLONE_NEWPID),
		nsenter.EnvSyncFD+"=4",
	)
	err = cmd.Start()
	w.Close()
	if err != nil {
		return execProcess{}, fmt.Errorf("start pod init: %w", err)
	}
	pid, err := readStagePid(r)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return execProcess{}, fmt.Errorf("start pod init in user namespace %s: %w", userns, err)
	}
	return execProcess{cmd: cmd, pid: pid}, nil
}

// readStagePid reads the pre-runtime stage's message: the forked init's
// pid, or why it failed. The message is one write of less than PIPE_BUF,
// so one read gets it whole; reading on to EOF would wait for the init,
// which inherited the pipe.
func readStagePid(r *os.File) (int, error) {
	buf := make([]byte, 4096)
	n, err := r.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return nsenter.ParsePid(buf[:n])
}

// startPodInit starts the pod init and returns the function that stops it
// when the shim shuts down (ending every process left in the namespace).
func (d *daemon) startPodInit() (func(), error) {
	bin := d.cfg.InitBinary
	if bin == "" {
		bin = "/proc/self/exe"
	}
	p, pidfd, err := d.reaper.spawn(func() (Process, error) {
		p, err := startPodInit(bin, d.cfg.PodUserNS)
		if err != nil {
			return nil, err
		}
		return p, nil
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
