package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// DefaultShmSize is the size of a pod's /dev/shm when the caller gives none,
// the same default as Docker and containerd.
const DefaultShmSize = 64 << 20

// MountShm mounts the pod's shared /dev/shm, a tmpfs of sizeBytes
// (DefaultShmSize if <= 0) at path, created if needed, its root owned by
// host IDs uid and gid: 0, 0 for a pod in the node's user namespace, the
// host IDs of the pod's root for a pod with its own, so that its root owns
// it. Containers of the pod that do not share the host's IPC namespace
// bind-mount it at /dev/shm. A path that is already a mount point fails
// with ErrAlreadyExists.
func MountShm(ctx context.Context, path string, sizeBytes int64, uid, gid uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if sizeBytes <= 0 {
		sizeBytes = DefaultShmSize
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	mounted, err := mountinfo.Mounted(path)
	if err != nil {
		return fmt.Errorf("check mount %s: %w", path, err)
	}
	if mounted {
		return errdefs.AlreadyExists("shm mount %s", path)
	}
	opts := fmt.Sprintf("mode=1777,size=%d", sizeBytes)
	if uid != 0 || gid != 0 {
		opts += fmt.Sprintf(",uid=%d,gid=%d", uid, gid)
	}
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return &os.PathError{Op: "mount tmpfs " + opts, Path: path, Err: err}
	}
	return nil
}

// UnmountShm detaches the pod's /dev/shm and removes the mount point. It is
// idempotent.
func UnmountShm(path string) error {
	if err := unmountAll(path); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}
