// Command skiff-shim is Skiff's per-pod process: re-executed as
// "skiff-shim init" it is a container's init, as "skiff-shim runtime" an
// OCI runtime CLI over package oci, and otherwise the pod shim daemon.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/shim"
)

func init() {
	// The container init must run on the main thread, locked, from the
	// very start: every per-thread kernel state it sets up (namespaces,
	// credentials, seccomp) is inherited by execve from this thread only.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.GOMAXPROCS(1)
		runtime.LockOSThread()
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
		os.Exit(shim.Main(os.Args[2:]))
	default:
		// The per-pod shim daemon (package shim) takes this branch.
		fmt.Fprintf(os.Stderr, "skiff-shim: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
