package shim

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// exitStatus is what wait4 returned for one process.
type exitStatus struct {
	status unix.WaitStatus
	at     time.Time
}

// code returns the exit code the way shells and the kubelet report it:
// the exit status, or 128+signal for a process killed by a signal.
func (e exitStatus) code() (code, sig int) {
	switch {
	case e.status.Exited():
		return e.status.ExitStatus(), 0
	case e.status.Signaled():
		s := int(e.status.Signal())
		return 128 + s, s
	}
	return 255, 0
}

// reaper collects every child of the shim (the shim is a child subreaper,
// so orphaned container processes become its children too) and hands the
// status of the ones somebody waits for to that waiter. Exits of processes
// nobody registered are dropped after reaping, which is the point: no
// zombies pile up in the pod.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan exitStatus
}

func newReaper() *reaper { return &reaper{waiters: make(map[int]chan exitStatus)} }

// run reaps on every SIGCHLD until ctx ends.
func (r *reaper) run(ctx context.Context) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	r.reap()
	for {
		select {
		case <-sigc:
			r.reap()
		case <-ctx.Done():
			return
		}
	}
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- exitStatus{status: ws, at: time.Now()}
		}
	}
}

// spawn runs fn, which starts a process and returns its pid, with reaping
// paused. That closes two races: the new process cannot be reaped before
// its waiter is registered, and fn may start and wait for helper processes
// of its own without the reaper taking their exits.
//
// The returned pidfd refers to the new process for signalling without pid
// reuse races; it is -1 if the kernel has no pidfd_open. The caller closes
// it.
func (r *reaper) spawn(fn func() (int, error)) (pid int, pidfd int, ch <-chan exitStatus, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err = fn()
	if err != nil {
		return 0, -1, nil, err
	}
	// The process has not been reaped (reaping is paused), so the pid
	// cannot have been reused yet.
	pidfd, perr := unix.PidfdOpen(pid, 0)
	if perr != nil {
		pidfd = -1
	}
	c := make(chan exitStatus, 1)
	r.waiters[pid] = c
	return pid, pidfd, c, nil
}

// paused runs fn with reaping paused, for Runtime calls that might start and
// wait for helper processes.
func (r *reaper) paused(fn func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fn()
}
