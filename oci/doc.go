// Package oci is Skiff's own OCI runtime-spec executor: it turns a runtime
// spec plus an already mounted rootfs into an isolated process, without runc
// or containerd libraries.
//
// A container's init is the skiff-shim binary re-executed as "skiff-shim
// init" (see Init). The parent side (Executor) clones it into the new
// namespaces the spec asks for, joins the namespaces given by path from a
// locked, throw-away OS thread, places it in its cgroup, applies rlimits and
// oom_score_adj with prlimit and /proc writes, and hands it its
// configuration as JSON over an inherited pipe. The init sets up mounts,
// pivot_root, devices, hostname, sysctls and masked paths, then waits on a
// FIFO (the start barrier) until Start writes to it, and finally sets the
// per-thread credentials (user, capabilities, no_new_privs, seccomp) on its
// locked thread and calls execve from that thread.
//
// Everything the executor needs to find a container again lives in
// <StateDir>/<id>/state.json, so a process that did not create a container
// (a restarted daemon, the CLI) can Start, Kill, inspect and Delete it. The
// init's liveness is checked by pid plus its start time (field 22 of
// /proc/<pid>/stat), which protects against pid reuse.
package oci
