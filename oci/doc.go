// Package oci is Skiff's own OCI runtime-spec executor: it turns a runtime
// spec plus an already mounted rootfs into an isolated process, without runc
// or containerd libraries.
//
// A container's init is the skiff-shim binary re-executed as "skiff-shim
// init" (see Init). The parent side (Executor) clones it into the new
// namespaces the spec asks for, joins the namespaces given by path from a
// locked, throw-away OS thread, places it in its cgroup, applies rlimits
// and oom_score_adj with prlimit and /proc writes, and hands it its
// configuration as JSON over an inherited pipe. The init sets up mounts,
// pivot_root, devices, hostname, sysctls and masked paths, then waits on a
// FIFO (the start barrier) until Start writes to it, and finally sets the
// per-thread credentials (user, capabilities, no_new_privs, seccomp) on its
// locked thread and calls execve from that thread.
//
// Cgroups. A process moved into a cgroup by a cgroup.procs write takes the
// kernel's cgroup migration lock, whose writer side waits out an RCU grace
// period (milliseconds, per hierarchy); a process that moves itself while
// single-threaded, or is born in its cgroup, does not. So the init is
// cloned straight into its cgroup2 directory (clone3 CLONE_INTO_CGROUP;
// a refused clone falls back to a plain one, joined by the parent), and its
// main thread writes "0" to the v1 hierarchies' tasks files, which the
// parent opened for it, before its Go runtime starts other threads. The
// parent joins only what is left (all of it for an init that joins a
// user namespace). The init says "configured" once it read its
// configuration; the parent then sets its limits and sends "joined"; the init
// waits for it only before its first step that needs the cgroup (a cgroup
// mount, device nodes, hooks, the unshare of its cgroup namespace).
//
// Namespaces. New namespaces come from clone flags, except the cgroup
// namespace, which the init unshares itself once the parent has placed it
// in its cgroup (so that cgroup is the namespace's root). Namespaces given
// by path (a pod's net, ipc, uts and pid) are joined by the parent with
// setns on a locked OS thread that then forks the init: os/exec clones from
// the calling thread, so the child inherits that thread's namespaces, and
// setns on a PID namespace affects only children, which is what is wanted.
// The thread is never unlocked; its goroutine exits and the Go runtime
// ends the thread. Exec joins the container's pid, net, ipc, uts and cgroup
// namespaces the same way, while the mount namespace is joined by the exec
// init itself (after unshare(CLONE_FS)), because the init binary must be
// resolved on the host first. A time namespace is refused: only a new
// child can enter one.
//
// User namespaces. A new one (no path) comes from the clone flags with the
// spec's maps, written by the parent; the init runs as its root. Joining
// one (a pod's, by path) needs a single-threaded caller, so the init's
// pre-runtime stage (package nsenter, C run before the Go runtime) joins
// it, becomes its root and unshares the container's new mount, PID, UTS,
// IPC and network namespaces, which the user namespace then owns; for a
// new PID namespace it forks, and the stage stays the init's parent,
// mirroring its exit. The init's host pid reaches the parent on the sync
// socket. A container in a user namespace gets its bind mounts' sources
// as detached mounts the parent opened (open_tree), idmapped when a mount
// has ID mappings, because its root can neither walk the host's root-only
// directories nor make idmapped mounts; the init attaches them with
// move_mount.
//
// Hooks. The runtime-namespace create hooks (prestart, createRuntime) run
// in the parent while the init waits before pivot_root (it asks on the sync
// socket, the parent answers); createContainer hooks are run by the init
// there, and startContainer hooks after the start barrier, before execve;
// poststart runs in Start once the process has exec'd (Start reads the
// start result FIFO to its end), poststop in Delete. See hooks_linux.go.
//
// Everything the executor needs to find a container again lives in
// <StateDir>/<id>/state.json, so a process that did not create a container
// (a restarted daemon, the CLI) can Start, Kill, inspect and Delete it. The
// init's liveness is checked by pid plus its start time (field 22 of
// /proc/<pid>/stat), which protects against pid reuse.
package oci
