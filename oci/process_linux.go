package oci

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/procwait"
)

// Process is a process started by Exec.
type Process struct {
	Pid int
	// Console is the pty master when the process has a terminal.
	Console *os.File
	cmd     *exec.Cmd
}

func resize(console *os.File, width, height uint16) error {
	if console == nil {
		return errdefs.FailedPrecondition("process has no terminal")
	}
	ws := &unix.Winsize{Col: width, Row: height}
	if err := unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	return nil
}

func waitCmd(cmd *exec.Cmd) (ExitStatus, error) {
	// Until the process exits the wait holds a goroutine, not a thread;
	// cmd.Wait then reaps it at once (or waits itself if that failed).
	_ = procwait.Exited(cmd.Process.Pid)
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitStatus{}, err
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{}, errors.New("no wait status")
	}
	return exitStatus(ws), nil
}

func exitStatus(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal(), CoreDumped: ws.CoreDump()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// setProcessLimits applies rlimits with prlimit and oom_score_adj from the
// parent, before the process runs user code. Setting rlimits here (not in
// the Go init) keeps the Go runtime's NOFILE bookkeeping out of the way.
// A lower oom_score_adj than the current one needs CAP_SYS_RESOURCE; when
// the kernel refuses, the current value is kept and a warning logged.
func (e *Executor) setProcessLimits(pid int, p *specs.Process) error {
	for _, r := range p.Rlimits {
		lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(pid, rlimitNames[r.Type], &lim, nil); err != nil {
			return fmt.Errorf("prlimit %s=%d:%d on pid %d: %w", r.Type, r.Soft, r.Hard, pid, err)
		}
	}
	if p.OOMScoreAdj == nil {
		return nil
	}
	path := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	want := *p.OOMScoreAdj
	err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		b, rerr := os.ReadFile(path)
		cur, cerr := strconv.Atoi(strings.TrimSpace(string(b)))
		if rerr == nil && cerr == nil && want < cur {
			e.logger().Warn("oom_score_adj below the current value refused; keeping current",
				"pid", pid, "requested", want, "current", cur)
			return nil
		}
	}
	return fmt.Errorf("set oom_score_adj %d: %w", want, err)
}

// Container is a container this process created (and therefore may wait
// for).
type Container struct {
	ID  string
	Pid int
	// Console is the pty master when the process has a terminal.
	Console *os.File
	cmd     *exec.Cmd
}

// Wait waits for the container's init (after Start, the user process) to
// exit. Only the process that called Create can wait.
func (c *Container) Wait() (ExitStatus, error) { return waitCmd(c.cmd) }

// ChildPid is the caller's child that Wait waits for: the init itself, or
// the pre-runtime stage that forked the init into a new PID namespace and
// ends the way the init does (package nsenter).
func (c *Container) ChildPid() int { return c.cmd.Process.Pid }

// Wait waits for the exec'd process to exit.
func (p *Process) Wait() (ExitStatus, error) { return waitCmd(p.cmd) }

// Resize sets the terminal size of a process that has a terminal.
func (p *Process) Resize(width, height uint16) error { return resize(p.Console, width, height) }

// Resize sets the terminal size of a container that has a terminal.
func (c *Container) Resize(width, height uint16) error { return resize(c.Console, width, height) }
