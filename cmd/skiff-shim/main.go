// Command skiff-shim is Skiff's per-pod process: re-executed as
// "skiff-shim init" it is a container's init, as "skiff-shim runtime" an
// OCI runtime CLI over package oci, as "skiff-shim nshold" the short-lived
// holder of a new pod user namespace (package sandbox), and otherwise the
// pod shim daemon.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/skiffcri/skiff/oci"
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
		// A no-op when started by the executor, which sets GOMAXPROCS=1.
		runtime.GOMAXPROCS(1)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: skiff-shim init | runtime ... | daemon ... | nshold")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		oci.Init(initOptions())
	case "runtime":
		os.Exit(runtimeMain(os.Args[2:]))
	case "daemon":
		os.Exit(daemon.Main(os.Args[2:]))
	case "nshold":
		os.Exit(nshold())
	default:
		fmt.Fprintf(os.Stderr, "skiff-shim: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// nshold keeps alive the namespaces it was cloned into (package sandbox
// starts it with CLONE_NEWUSER and the pod's other CLONE_NEW* flags, since
// the multi-threaded daemon cannot unshare a user namespace) until the
// daemon has pinned them: it blocks until its stdin, a pipe from the daemon,
// reaches EOF, which also comes if the daemon dies. It does nothing else.
func nshold() int {
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "skiff-shim nshold: %v\n", err)
		return 1
	}
	return 0
}
