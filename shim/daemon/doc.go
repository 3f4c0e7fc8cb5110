// Package daemon is skiff-shim's per-pod daemon ("skiff-shim daemon"): it
// serves the protocol package shim describes on the pod's socket and owns
// the pod's containers while skiffd comes and goes.
//
// Serve runs it in the calling process, which becomes a child subreaper:
// containers are launched through a Runtime (OCIRuntime, the oci executor,
// in production; package shimtest has one of host processes for tests),
// every process that ends below the shim is reaped, container stdout and
// stderr go to the kubelet's log file in the CRI format (package crilog)
// and to attach sessions, and each exit is recorded in <state dir>/exit.json
// with fsync before any client hears of it. Main and MainWithRuntime are the
// command's body: a launcher that detaches the daemon into its own session
// and waits for its socket, and, with a shared PID namespace, the pod init.
//
// # Memory
//
// The shim is meant to cost little per pod: after two seconds without a
// request it returns free heap memory to the kernel and drops its mappings
// of the executable's read-only pages (they stay in the page cache, shared
// by all shims, and fault back in on use). Build skiff-shim with
// CGO_ENABLED=0 so no libc is mapped into every shim.
package daemon
