// Package sandbox creates and releases the operating-system resources a pod
// owns outside its containers: pinned namespaces (net, ipc, uts and, when the
// pod shares one, pid), the pod's hostname, hosts and resolv.conf files, its
// /dev/shm, and namespaced sysctls. The CRI RPCs that sequence these live in
// package cri; this package only knows the kernel.
//
// Namespaces are created on a locked OS thread that is thrown away afterwards
// (its goroutine exits while still locked, so the Go runtime terminates the
// thread): a thread whose namespaces differ from the process's must never run
// other goroutines.
package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// NamespaceSet selects namespace kinds.
type NamespaceSet uint8

// Namespace kinds a pod can own.
const (
	NetNS NamespaceSet = 1 << iota
	IPCNS
	UTSNS
	// PIDNS pins a PID namespace that has no process yet: the first process
	// created in it (the pod's init, started by the shim after setns on
	// Namespaces.PID) becomes its PID 1. When that process exits, the
	// kernel refuses new processes in the namespace, so the pod's init must
	// outlive its containers.
	PIDNS
)

type nsKind struct {
	set  NamespaceSet
	flag int
	name string // file name under the pod's ns dir
	proc string // entry under /proc/thread-self/ns
}

// nsKinds lists the kinds in creation order.
var nsKinds = []nsKind{
	{NetNS, unix.CLONE_NEWNET, "net", "net"},
	{IPCNS, unix.CLONE_NEWIPC, "ipc", "ipc"},
	{UTSNS, unix.CLONE_NEWUTS, "uts", "uts"},
	// unshare(CLONE_NEWPID) leaves the caller in its namespace and puts only
	// its future children in the new one, reachable as pid_for_children.
	{PIDNS, unix.CLONE_NEWPID, "pid", "pid_for_children"},
}

// Namespaces holds the paths of a pod's pinned namespace files; an empty path
// means the pod shares the host's namespace of that kind.
type Namespaces struct {
	Net, IPC, UTS, PID string
}

func (n *Namespaces) ptr(set NamespaceSet) *string {
	switch set {
	case NetNS:
		return &n.Net
	case IPCNS:
		return &n.IPC
	case UTSNS:
		return &n.UTS
	case PIDNS:
		return &n.PID
	}
	return nil
}

// CreateNamespaces creates new namespaces of the given kinds and pins each by
// bind-mounting it to dir/<kind> (net, ipc, uts, pid), creating dir if
// needed. When kinds includes UTSNS and hostname is not empty, the new UTS
// namespace gets that hostname; without UTSNS the hostname is ignored (the
// pod uses the host's). The loopback interface of a new network namespace is
// left down: the CNI loopback plugin brings it up.
//
// On failure nothing is left mounted. Namespace files that are already
// mounted make it fail with ErrAlreadyExists.
func CreateNamespaces(ctx context.Context, dir string, kinds NamespaceSet, hostname string) (Namespaces, error) {
	if err := ctx.Err(); err != nil {
		return Namespaces{}, err
	}
	if len(hostname) > maxHostname {
		return Namespaces{}, errdefs.InvalidArgument("hostname %q longer than %d bytes", hostname, maxHostname)
	}
	var (
		flags int
		todo  []nsKind
		ns    Namespaces
	)
	for _, k := range nsKinds {
		if kinds&k.set != 0 {
			flags |= k.flag
			todo = append(todo, k)
		}
	}
	if len(todo) == 0 {
		return ns, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return ns, err
	}
	for i, k := range todo {
		if err := createMountTarget(filepath.Join(dir, k.name)); err != nil {
			for _, c := range todo[:i] {
				_ = os.Remove(filepath.Join(dir, c.name))
			}
			return ns, err
		}
	}

	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine exits with the thread locked, so
		// the runtime terminates the thread instead of reusing it in the
		// pod's namespaces.
		runtime.LockOSThread()
		errc <- pinNamespaces(dir, flags, todo, hostname)
	}()
	if err := <-errc; err != nil {
		for _, k := range todo {
			_ = removeNamespaceFile(filepath.Join(dir, k.name))
		}
		return Namespaces{}, err
	}
	for _, k := range todo {
		*ns.ptr(k.set) = filepath.Join(dir, k.name)
	}
	return ns, nil
}

// pinNamespaces runs on a locked thread that is discarded afterwards.
func pinNamespaces(dir string, flags int, todo []nsKind, hostname string) error {
	if err := unix.Unshare(flags); err != nil {
		return &os.PathError{Op: "unshare", Path: dir, Err: err}
	}
	if flags&unix.CLONE_NEWUTS != 0 && hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return &os.PathError{Op: "sethostname", Path: hostname, Err: err}
		}
	}
	for _, k := range todo {
		src := "/proc/thread-self/ns/" + k.proc
		dst := filepath.Join(dir, k.name)
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return &os.PathError{Op: "mount " + src, Path: dst, Err: err}
		}
	}
	return nil
}

// createMountTarget creates the empty file a namespace is bind-mounted on.
// A leftover plain file (from a crash before the mount) is reused.
func createMountTarget(path string) error {
	if isNamespace(path) {
		return errdefs.AlreadyExists("namespace %s", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return err
	}
	return f.Close()
}

// isNamespace reports whether path is a namespace file (nsfs), that is, a
// mounted pin.
func isNamespace(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// RemoveNamespaces unpins the namespaces under dir (lazily, so a process
// still inside keeps its namespace alive until it exits) and removes their
// files, then dir itself unless it holds anything else. It is idempotent.
func RemoveNamespaces(dir string) error {
	var errs []error
	for _, k := range nsKinds {
		if err := removeNamespaceFile(filepath.Join(dir, k.name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) {
		return err
	}
	return nil
}

func removeNamespaceFile(path string) error {
	if err := unmountAll(path); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// unmountAll detaches every mount stacked on path; a path that is not a
// mount point, or does not exist, is fine.
func unmountAll(path string) error {
	for range 16 {
		err := unix.Unmount(path, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return &os.PathError{Op: "umount", Path: path, Err: err}
		}
	}
	return &os.PathError{Op: "umount", Path: path, Err: unix.EBUSY}
}

// Do runs fn on a fresh OS thread that has joined the pod's net, ipc and uts
// namespaces (those whose paths are set). The thread is discarded when fn
// returns. Sockets fn creates belong to the pod's network namespace and may
// be used from any goroutine afterwards, which is how a port-forward dials
// into a pod. The PID namespace is not joined (setns on it affects only
// children).
func (n Namespaces) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: see CreateNamespaces.
		runtime.LockOSThread()
		if err := n.join(); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// join moves the calling, locked thread into the namespaces of n.
func (n Namespaces) join() error {
	for _, j := range []struct {
		path string
		flag int
	}{{n.Net, unix.CLONE_NEWNET}, {n.IPC, unix.CLONE_NEWIPC}, {n.UTS, unix.CLONE_NEWUTS}} {
		if j.path == "" {
			continue
		}
		fd, err := unix.Open(j.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: j.path, Err: err}
		}
		err = unix.Setns(fd, j.flag)
		unix.Close(fd)
		if err != nil {
			return &os.PathError{Op: "setns", Path: j.path, Err: err}
		}
	}
	return nil
}

// String is for error messages.
func (s NamespaceSet) String() string {
	out := ""
	for _, k := range nsKinds {
		if s&k.set != 0 {
			if out != "" {
				out += "|"
			}
			out += k.name
		}
	}
	if out == "" {
		return "none"
	}
	return out
}
