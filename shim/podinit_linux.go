package shim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

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
