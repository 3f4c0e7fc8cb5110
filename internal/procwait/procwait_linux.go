// Package procwait waits for a child process to exit without holding an
// OS thread. A blocking wait4 or waitid keeps a thread of the Go runtime
// in the kernel for as long as the child lives, and the runtime never
// gives threads back: a shim that waits for each container's process, the
// pod init and every exec would hold a thread (its stacks included) per
// process. A pidfd turns readable when its process exits, so the wait
// parks the goroutine in the runtime's poller instead.
package procwait

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Exited returns once the child pid has exited, leaving it unreaped: the
// caller's wait (exec.Cmd.Wait, wait4) then collects its status at once.
// An error means the wait could not be made pollable (no pidfd, a pid that
// is not a child): the caller's own blocking wait still works.
func Exited(pid int) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		// WNOWAIT: look, do not reap. The kernel sets si_signo to
		// SIGCHLD only when the child is waitable; 0 means it still
		// runs, so wait for the pidfd to turn readable.
		var info unix.Siginfo
		werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(werr, unix.EINTR) {
			return false
		}
		return werr != nil || info.Signo != 0
	})
	if err != nil {
		return fmt.Errorf("wait for %d: %w", pid, err)
	}
	if werr != nil {
		return fmt.Errorf("wait for %d: %w", pid, werr)
	}
	return nil
}
