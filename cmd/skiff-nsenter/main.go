// Command skiff-nsenter is the executor's pre-runtime stage for user
// namespaces, its only C. The kernel lets only a single-threaded process
// join a user namespace, and a Go process has threads before main, so the
// work is done by a constructor (nsenter.c) that runs from the C start-up
// code before the Go runtime and ends by executing another binary: the Go
// main below only runs when the program is started by hand.
//
// Started by the executor (package oci) or the pod shim with
// _SKIFF_NSENTER_USERNS_FD (the user namespace), _SKIFF_NSENTER_UNSHARE
// (clone flags to unshare once joined, so the user namespace owns those
// namespaces), _SKIFF_NSENTER_SYNC_FD (where messages go) and
// _SKIFF_NSENTER_EXEC_FD (the binary to run, with this process's argv), it
// joins the namespace, becomes its root, unshares, and executes the
// binary. When it unshares a PID namespace it first forks: the child
// executes the binary as PID 1 of the new namespace, the parent reports
// the child's host pid ({"type":"pid","pid":N}) and stays, a small C
// process that ends the way the child does. Errors are reported as
// {"type":"error","error":"..."} and on stderr.
//
// It is a separate binary so that the shim, which runs once per pod, stays
// a static Go binary without cgo (cgo's C runtime would cost every shim
// about 2 MiB more).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "skiff-nsenter is started by skiff-shim to enter a user namespace; it is not run by hand")
	os.Exit(2)
}
