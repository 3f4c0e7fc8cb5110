// Command skiff-shim is Skiff's per-pod process: re-executed as
// "skiff-shim init" it is a container's init, as "skiff-shim runtime" an
// OCI runtime CLI over package oci, and otherwise the pod shim daemon.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/skiffcri/skiff/oci"
	// The pre-runtime stage that joins user namespaces (C, before Go starts).
	_ "github.com/skiffcri/skiff/oci/nsenter"
	"github.com/skiffcri/skiff/shim/daemon"
)

func init() {
	// The main goroutine keeps the main thread for itself in every mode.
	// For the container init this is essential: every per-thread kernel
	// state it sets up (namespaces, credentials, seccomp) is inherited by
	// execve from this thread only. In the other modes it keeps the main
	// thread clean: the executor joins namespaces on throw-away locked
	// threads, and a locked goroutine that exits on the main thread would
	// wedge it in those namespaces instead of ending it.
	runtime.LockOSThread()
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.GOMAXPROCS(1)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: skiff-shim init | runtime ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		oci.Init(initOptions())
	case "runtime":
		os.Exit(runtimeMain(os.Args[2:]))
	case "daemon":
		os.Exit(daemon.Main(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "skiff-shim: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
