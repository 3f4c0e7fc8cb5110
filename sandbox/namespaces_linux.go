package sandbox

import (
	"context"
	"errors"
	"fmt"
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
	// PIDNS is the pod's shared PID namespace. CreateNamespaces cannot
	// make one: the kernel exposes a new PID namespace (pid_for_children)
	// only once its PID 1 exists. The pod's init process is started with
	// CLONE_NEWPID and then pinned with PinPIDNamespace.
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
	// Only pinned from an existing process (PinPIDNamespace).
	{PIDNS, unix.CLONE_NEWPID, "pid", "pid"},
}

// userKind is the pod's own user namespace. It is not a NamespaceSet kind:
// only CreateUserNamespaces makes one, and nothing joins it from a thread.
var userKind = nsKind{0, unix.CLONE_NEWUSER, "user", "user"}

// Namespaces holds the paths of a pod's pinned namespace files; an empty path
// means the pod shares the host's namespace of that kind.
type Namespaces struct {
	Net, IPC, UTS, PID string
	// User is the pod's own user namespace (CreateUserNamespaces), which
	// owns its net, ipc and uts namespaces.
	User string
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

// CreateNamespaces creates new namespaces of the given kinds (NetNS, IPCNS,
// UTSNS) and pins each by bind-mounting it to dir/<kind>, creating dir if
// needed. When kinds includes UTSNS and hostname is not empty, the new UTS
// namespace gets that hostname; without UTSNS the hostname is ignored (the
// pod uses the host's). The loopback interface of a new network namespace is
// brought up here, whatever the CNI config chains (see loopbackUp).
//
// On failure nothing is left mounted. Namespace files that are already
// mounted make it fail with ErrAlreadyExists.
func CreateNamespaces(ctx context.Context, dir string, kinds NamespaceSet, hostname string) (Namespaces, error) {
	if err := ctx.Err(); err != nil {
		return Namespaces{}, err
	}
	if kinds&PIDNS != 0 {
		return Namespaces{}, errdefs.InvalidArgument("a pod PID namespace needs its init process: start it with CLONE_NEWPID and use PinPIDNamespace")
	}
	if len(hostname) > maxHostname {
		return Namespaces{}, errdefs.InvalidArgument("hostname %q longer than %d bytes", hostname, maxHostname)
	}
	flags, todo := selectKinds(kinds)
	if len(todo) == 0 {
		return Namespaces{}, nil
	}
	if err := createMountTargets(dir, todo); err != nil {
		return Namespaces{}, err
	}
	if err := onThrowawayThread(func() error { return pinNamespaces(dir, flags, todo, hostname) }); err != nil {
		removeNamespaceFiles(dir, todo)
		return Namespaces{}, err
	}
	var ns Namespaces
	for _, k := range todo {
		*ns.ptr(k.set) = filepath.Join(dir, k.name)
	}
	return ns, nil
}

// selectKinds returns the clone flags and the nsKinds of kinds.
func selectKinds(kinds NamespaceSet) (flags int, todo []nsKind) {
	for _, k := range nsKinds {
		if kinds&k.set != 0 {
			flags |= k.flag
			todo = append(todo, k)
		}
	}
	return flags, todo
}

// createMountTargets creates dir and the pin files of kinds in it; on
// failure it removes those it created.
func createMountTargets(dir string, kinds []nsKind) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	for i, k := range kinds {
		if err := createMountTarget(filepath.Join(dir, k.name)); err != nil {
			for _, c := range kinds[:i] {
				_ = os.Remove(filepath.Join(dir, c.name))
			}
			return err
		}
	}
	return nil
}

// removeNamespaceFiles unpins and removes the pin files of kinds, on a
// failed create.
func removeNamespaceFiles(dir string, kinds []nsKind) {
	for _, k := range kinds {
		_ = removeNamespaceFile(filepath.Join(dir, k.name))
	}
}

// pinNamespaces runs on a locked thread that is discarded afterwards.
func pinNamespaces(dir string, flags int, todo []nsKind, hostname string) error {
	if err := unix.Unshare(flags); err != nil {
		return &os.PathError{Op: "unshare", Path: dir, Err: err}
	}
	if err := initNamespaces(flags, hostname); err != nil {
		return err
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

// initNamespaces brings the loopback up when flags has CLONE_NEWNET and sets
// the hostname when flags has CLONE_NEWUTS. Must be called with the OS
// thread locked, inside the new namespaces.
func initNamespaces(flags int, hostname string) error {
	if flags&unix.CLONE_NEWNET != 0 {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("pod loopback: %w", err)
		}
	}
	if flags&unix.CLONE_NEWUTS != 0 && hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return &os.PathError{Op: "sethostname", Path: hostname, Err: err}
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

// RemoveNamespaces unpins the namespaces under dir, the user namespace
// included (lazily, so a process still inside keeps its namespace alive
// until it exits), and removes their files, then dir itself unless it holds
// anything else. It is idempotent.
func RemoveNamespaces(dir string) error {
	var errs []error
	for _, k := range nsKinds {
		if err := removeNamespaceFile(filepath.Join(dir, k.name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeNamespaceFile(filepath.Join(dir, userKind.name)); err != nil {
		errs = append(errs, err)
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
// children), nor is the user namespace: the kernel refuses setns into a user
// namespace from a multi-threaded process. The thread stays in the host's
// user namespace, whose root keeps every capability over namespaces owned
// by the pod's.
func (n Namespaces) Do(fn func() error) error {
	return onThrowawayThread(func() error {
		if err := n.join(); err != nil {
			return err
		}
		return fn()
	})
}

// onThrowawayThread runs fn on a locked OS thread that the Go runtime
// terminates afterwards, so that per-thread kernel state fn changes
// (namespaces) never reaches other goroutines.
//
// The main thread is the exception: the runtime cannot terminate it and
// parks it forever instead, which would leave the process's leader (what
// /proc/<pid>/ns shows) inside a pod namespace and keep that namespace
// alive. So when the locked goroutine lands on the main thread, it keeps the
// main thread busy while a nested goroutine, necessarily on another thread,
// does the work, and the main thread is then released unchanged.
func onThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			errc <- onThrowawayThread(fn)
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: exiting locked makes the runtime kill the thread.
		errc <- fn()
	}()
	return <-errc
}

// PinPIDNamespace pins the PID namespace of process pid (the pod's init,
// PID 1 of its namespace) at dir/pid, so that containers join it by a path
// that cannot be confused with a reused PID. The pin does not keep the
// namespace usable: once its init exits, the kernel allows no new process in
// it. RemoveNamespaces removes the pin.
func PinPIDNamespace(dir string, pid int) (string, error) {
	if pid <= 0 {
		return "", errdefs.InvalidArgument("pin pid namespace: pid %d", pid)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "pid")
	if err := createMountTarget(dst); err != nil {
		return "", err
	}
	src := fmt.Sprintf("/proc/%d/ns/pid", pid)
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(dst)
		return "", &os.PathError{Op: "mount " + src, Path: dst, Err: err}
	}
	return dst, nil
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
