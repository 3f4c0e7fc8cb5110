package seccomp_test

import (
	"fmt"
	"runtime"

	"github.com/skiffcri/skiff/oci/seccomp"
)

// Container init compiles the profile early and installs it last, on the
// locked thread that then calls execve.
func ExamplePrepare() {
	runtime.LockOSThread()
	f, err := seccomp.Prepare(seccomp.RuntimeDefaultFor([]string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(f.Program()) > 0)
	// ... set no_new_privs, drop capabilities, then:
	//	if err := f.Install(); err != nil { ... }
	//	unix.Exec(path, argv, env)
	// Output: true
}
