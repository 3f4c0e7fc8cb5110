package cgroups

import (
	"context"
	"os"
)

// cgroupFS is the cgroup filesystem as the Manager uses it. Production
// code talks to the kernel's cgroupfs (kernelFS); unit tests give a Layout
// a simulation over a temporary directory instead, so that no code path of
// the Manager depends on whether it is being tested.
type cgroupFS interface {
	// readFile returns a cgroup file's content.
	readFile(path string) (string, error)
	// writeFile stores one value in an existing cgroup file with a single
	// write(2), which is how cgroupfs wants it.
	writeFile(path, value string) error
	// openWrite opens an existing cgroup file for writing.
	openWrite(path string) (*os.File, error)
	// exists reports whether an interface file or cgroup exists.
	exists(path string) bool
	// mkdir creates one cgroup; an error wrapping EEXIST when it is there.
	mkdir(path string) error
	// rmdir removes one empty cgroup.
	rmdir(path string) error
	// removeTree removes a cgroup and its children, deepest first, waiting
	// out the kernel's short EBUSY after the last task left until ctx ends.
	removeTree(ctx context.Context, dir string) error
	// attachDevices installs a v2 device filter program on a cgroup.
	attachDevices(dir string, prog []byte) error
}
