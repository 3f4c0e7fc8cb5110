package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// WaitExit blocks until the shim daemon serving dir, whose pid is pid, has
// exited, or ctx ends (then it returns ctx's error). It holds a pidfd, so a
// reused pid cannot fool it, and parks on the runtime's poller rather than
// an OS thread, so watching every pod's shim costs a goroutine each. A pid
// that is not the shim of dir (already gone and reused) counts as exited.
func WaitExit(ctx context.Context, dir string, pid int) error {
	if pid <= 0 {
		return errdefs.InvalidArgument("shim of %s: pid %d", dir, pid)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shim of %s: pidfd_open %d: %w", dir, pid, err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))
	defer f.Close()
	// Checked after the pidfd is open: from here on the pid cannot be
	// reused behind our back.
	if !IsShimProcess(pid, dir) {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		// The callback reports whether the pidfd is readable (the process
		// exited); returning false parks the goroutine until the poller
		// says it is, or until f is closed.
		done <- rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(p, 0)
			return err != nil || n > 0
		})
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Closing f wakes the parked read.
		f.Close()
		<-done
		return ctx.Err()
	}
}

// IsShimProcess reports whether pid is alive and is the shim daemon serving
// dir (its command line names dir), not a process that reused the pid.
func IsShimProcess(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	want := filepath.Clean(dir)
	for _, arg := range splitNul(b) {
		if arg == want {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return err == nil && !zombie(st)
		}
	}
	return false
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

// PidFromFile reads the pid the shim daemon of dir wrote; 0 when none.
func PidFromFile(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, PidFileName))
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "%d", &pid); err != nil {
		return 0
	}
	return pid
}
