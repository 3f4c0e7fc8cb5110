// Package nsenter is what the executor and the pod shim share with
// skiff-nsenter (cmd/skiff-nsenter), the pre-runtime stage that joins a
// user namespace: the kernel lets only a single-threaded process do that,
// and a Go process has several threads before main runs, so it is a C
// constructor in a binary of its own that ends by executing the real init.
//
// A process started as skiff-nsenter with EnvUserNS and EnvExecFD joins
// that user namespace, becomes its root (uid and gid 0 inside,
// supplementary groups cleared), unshares the namespaces named by
// EnvUnshare, so that they are owned by the joined user namespace (a
// mount namespace the init may mount in, a PID namespace whose /proc it
// may mount), and executes the binary behind EnvExecFD with its own argv.
// A new PID namespace only applies to children, so then it forks first:
// the child (PID 1 of the new namespace) executes the binary, and the
// parent stays as a small C process that reports the child's host PID on
// the fd named by EnvSyncFD, waits for it and exits the same way (its exit
// code, or the same signal), so whoever waits for the process it started
// sees the container's exit status. The child is killed with its parent
// (PR_SET_PDEATHSIG) until its credentials change.
//
// With EnvPodInit the stage is a pod's init instead of executing a
// binary: started with CLONE_NEWPID (PID 1 of the new namespace), or with
// EnvUserNS and CLONE_NEWPID in EnvUnshare, when its forked child is. The
// init reaps every process of the namespace and exits 0 on SIGTERM or
// SIGINT, as a pause process does; a few pages of C, not a Go runtime per
// pod.
//
// Messages on the sync fd (a SOCK_SEQPACKET socket or a pipe, one write
// each): {"type":"pid","pid":N}, {"type":"error","error":"..."}.
package nsenter

// Binary is the file name of the stage, installed next to skiff-shim.
const Binary = "skiff-nsenter"

// Environment variables the stage reads.
const (
	// EnvUserNS names an fd of the user namespace to join.
	EnvUserNS = "_SKIFF_NSENTER_USERNS_FD"
	// EnvUnshare holds clone flags (decimal) to unshare once joined.
	EnvUnshare = "_SKIFF_NSENTER_UNSHARE"
	// EnvSyncFD names the fd that gets the stage's messages.
	EnvSyncFD = "_SKIFF_NSENTER_SYNC_FD"
	// EnvExecFD names an fd of the binary to execute once set up.
	EnvExecFD = "_SKIFF_NSENTER_EXEC_FD"
	// EnvPodInit, set to anything, makes the stage a pod init.
	EnvPodInit = "_SKIFF_NSENTER_POD_INIT"
)

// Message types the stage writes on the sync fd.
const (
	MsgPid   = "pid"
	MsgError = "error"
)
