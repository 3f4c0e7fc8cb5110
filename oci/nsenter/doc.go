// Package nsenter is the executor's only C: a constructor that runs before
// the Go runtime starts, because the kernel lets only a single-threaded
// process join a user namespace (setns(CLONE_NEWUSER)), and a Go process
// has several threads before main runs.
//
// A process started with EnvUserNS in its environment (the skiff-shim
// binary re-executed as a container init, an exec init or a pod init)
// joins that user namespace, becomes its root (uid and gid 0 inside,
// supplementary groups cleared), and unshares the namespaces named by
// EnvUnshare, so that they are owned by the joined user namespace: a
// mount namespace the init may mount in, a PID namespace whose /proc it
// may mount. A new PID namespace only applies to children, so then the
// constructor forks: the child (PID 1 of the new namespace) goes on into
// Go, and the parent stays as a small C process that reports the child's
// host PID on the fd named by EnvSyncFD, waits for it and exits the same
// way (its exit code, or the same signal), so whoever waits for the
// process it started sees the container's exit status. The child is
// killed with its parent (PR_SET_PDEATHSIG) until its credentials change.
//
// Errors go to the EnvSyncFD socket as the executor's JSON error message
// ({"type":"error","error":"..."}), the pid as {"type":"pid","pid":N}.
//
// Without cgo the constructor is not built: Available is false and callers
// must refuse to join a user namespace.
package nsenter

// Environment variables the constructor reads.
const (
	// EnvUserNS names an fd of the user namespace to join.
	EnvUserNS = "_SKIFF_NSENTER_USERNS_FD"
	// EnvUnshare holds clone flags (decimal) to unshare once joined.
	EnvUnshare = "_SKIFF_NSENTER_UNSHARE"
	// EnvSyncFD names the fd (a SOCK_SEQPACKET socket or a pipe) that
	// gets the constructor's messages.
	EnvSyncFD = "_SKIFF_NSENTER_SYNC_FD"
)

// Message types the constructor writes on the sync fd.
const (
	MsgPid   = "pid"
	MsgError = "error"
)
