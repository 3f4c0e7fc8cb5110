package wire

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSockPath is the longest path a unix socket address holds (sun_path is
// 108 bytes with the terminating NUL).
const maxSockPath = 107

// SocketAddr returns an address for the socket in dir that fits sun_path.
// A shim directory deep enough to overflow it (long state dirs plus 64-char
// pod ids) is reached through /proc/self/fd/N of an O_PATH descriptor;
// release closes it and must be called after bind or connect.
func SocketAddr(dir string) (addr string, release func(), err error) {
	full := filepath.Join(dir, SocketName)
	if len(full) <= maxSockPath {
		return full, func() {}, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, SocketName), func() { unix.Close(fd) }, nil
}
