package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// orphanScanInterval is a fallback for an orphan whose SIGCHLD came while a
// scan was already past it.
const orphanScanInterval = 30 * time.Second

// reaper reaps the children of the shim that no Process owns: as a child
// subreaper the shim inherits every orphaned process of the pod, and
// without this they would stay zombies. Children returned by the Runtime
// are owned (their Process.Wait reaps them) and are never touched, so the
// two never steal each other's exit status.
type reaper struct {
	mu    sync.Mutex
	owned map[int]bool
	// stand maps a process's pid to the child standing in for it.
	stand map[int]int
}

func newReaper() *reaper { return &reaper{owned: make(map[int]bool), stand: make(map[int]int)} }

// run reaps orphans on every SIGCHLD until ctx ends.
func (r *reaper) run(ctx context.Context) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	tick := time.NewTicker(orphanScanInterval)
	defer tick.Stop()
	r.reapOrphans()
	for {
		select {
		case <-sigc:
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		r.reapOrphans()
	}
}

// reapOrphans waits (without blocking) for every child that nobody owns.
// Children are listed from /proc/self/task/*/children, so an owned child
// is never waited for here even when it is a zombie.
func (r *reaper) reapOrphans() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pid := range children() {
		if r.owned[pid] {
			continue
		}
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
}

// children lists the pids of the calling process's children, across all
// its threads (a child belongs to the thread that forked it; an orphan to
// the thread the kernel picked).
func children() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range bytes.Fields(b) {
			if pid, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// spawn runs fn, which starts a process, with orphan reaping paused, and
// marks the new process owned. Pausing lets fn start and wait for helper
// processes of its own without the reaper taking their exits, and makes the
// new process owned before any scan can see it.
//
// The returned pidfd refers to the new process for signalling without pid
// reuse races; it is -1 if it could not be opened. The caller closes it and
// calls release once Process.Wait returned.
func (r *reaper) spawn(fn func() (Process, error)) (Process, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := fn()
	if err != nil {
		return nil, -1, err
	}
	// Nobody has waited for the process yet (its Wait runs later), so the
	// pid still names it.
	pidfd, perr := unix.PidfdOpen(p.Pid(), 0)
	if perr != nil {
		pidfd = -1
	}
	own := p.Pid()
	if c, ok := p.(stoodInFor); ok {
		own = c.ChildPid()
		r.stand[p.Pid()] = own
	}
	r.owned[own] = true
	return p, pidfd, nil
}

// stoodInFor is a Process whose Wait waits for another child of the shim
// than Pid: the executor's pre-runtime stage that forked an init into a
// new PID namespace and mirrors its exit. That child is the one the
// orphan reaper must leave alone.
type stoodInFor interface {
	ChildPid() int
}

// release forgets an owned pid after its Process.Wait returned.
func (r *reaper) release(pid int) {
	r.mu.Lock()
	if own, ok := r.stand[pid]; ok {
		delete(r.stand, pid)
		pid = own
	}
	delete(r.owned, pid)
	r.mu.Unlock()
}

// paused runs fn with orphan reaping paused, for Runtime calls that might
// start and wait for helper processes.
func (r *reaper) paused(fn func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fn()
}
