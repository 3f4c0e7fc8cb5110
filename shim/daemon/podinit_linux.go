package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// podInitArg makes "skiff-shim daemon" run as a pod's init instead.
const podInitArg = "--pod-init"

// execProcess adapts an exec.Cmd the shim started itself to Process.
type execProcess struct{ cmd *exec.Cmd }

func (p execProcess) Pid() int          { return p.cmd.Process.Pid }
func (p execProcess) Console() *os.File { return nil }
func (p execProcess) Wait() (ExitStatus, error) {
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

// startPodInit starts the pod's init as PID 1 of a new PID namespace. The
// pod's containers join that namespace (/proc/<pid>/ns/pid, or the pinned
// copy skiffd makes of it) and the init reaps their orphans, as a pause
// container would.
func startPodInit(binary string) (*exec.Cmd, error) {
	cmd := exec.Command(binary, "daemon", podInitArg)
	cmd.Args[0] = "skiff-pod-init"
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pod init: %w", err)
	}
	return cmd, nil
}

// podInitMain is PID 1 of a pod's shared PID namespace: it reaps every
// process re-parented to it and otherwise sleeps. As a namespace init it
// receives only the signals it handles; SIGTERM and SIGINT end it, and
// with it every process in the namespace.
func podInitMain() int {
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
		}
		if s := <-sigc; s != unix.SIGCHLD {
			return 0
		}
	}
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
