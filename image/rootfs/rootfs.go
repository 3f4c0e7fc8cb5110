// Package rootfs mounts containers' root filesystems: an overlay of the
// image's unpacked layers with a writable layer of the container's own.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiffcri/skiff/internal/statedir"
	"golang.org/x/sys/unix"
)

// Layers gives the unpacked layer directories of an image, top-most first.
type Layers interface {
	LayerDirs(ctx context.Context, imageID string) ([]string, error)
}

// Manager mounts a container's rootfs in its state directory (Containers)
// with the writable layer in RootDir/<id>/{upper,work}, so the writable
// data survives a reboot of the daemon while the mount itself lives in the
// runtime state.
type Manager struct {
	RootDir    string              // e.g. /var/lib/skiff/containers
	Containers statedir.Containers // e.g. /run/skiff/containers
	Layers     Layers
}

// maxMountData is the kernel's limit for the options string of mount(2).
const maxMountData = 4096 - 1

// MountOptions are the per-container choices of a rootfs mount.
type MountOptions struct {
	// UserNS, when set, is the path of a user namespace file (e.g. a
	// pinned /run/skiff/pods/<id>/ns/user, or /proc/<pid>/ns/user): the
	// layers and the writable layer are presented through idmapped mounts
	// made with that namespace's mappings, so that the image's root-owned
	// files belong to the container's root and what the container writes
	// lands on disk as if written without a user namespace (the layers stay
	// shared between containers with different mappings).
	UserNS string
}

// Mount creates the writable layer and mounts the overlay; it returns the
// rootfs path. A second Mount of a mounted id returns the same path. On
// failure nothing is left mounted, and the directories this call created
// are removed.
func (m *Manager) Mount(ctx context.Context, id, imageID string, opts MountOptions) (_ string, err error) {
	target := m.path(id)
	if mounted(target) {
		return target, nil
	}
	lowers, err := m.Layers.LayerDirs(ctx, imageID)
	if err != nil {
		return "", fmt.Errorf("rootfs %s: layers of %s: %w", id, imageID, err)
	}
	base := filepath.Join(m.RootDir, id)
	// A writable layer that exists already (a container re-mounted after a
	// reboot) holds the container's data and outlives a failed Mount; one
	// made here does not, nor does a mount point made here.
	if _, serr := os.Lstat(base); errors.Is(serr, os.ErrNotExist) {
		defer func() {
			if err != nil {
				_ = os.RemoveAll(base)
			}
		}()
	}
	if _, serr := os.Lstat(target); errors.Is(serr, os.ErrNotExist) {
		defer func() {
			if err != nil {
				_ = os.Remove(target) // never RemoveAll: it could be a mount
			}
		}()
	}
	upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("rootfs %s: %w", id, err)
		}
	}
	if len(lowers) == 0 {
		// An image without layers still needs a lower directory.
		empty := filepath.Join(base, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return "", fmt.Errorf("rootfs %s: %w", id, err)
		}
		lowers = []string{empty}
	}
	if opts.UserNS != "" {
		if err := mountIDMapped(lowers, base, target, opts.UserNS); err != nil {
			return "", fmt.Errorf("rootfs %s: %w", id, err)
		}
		return target, nil
	}
	for _, l := range lowers {
		if strings.ContainsAny(l, ":,") {
			return "", fmt.Errorf("rootfs %s: layer path %q contains an overlay separator", id, l)
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off", strings.Join(lowers, ":"), upper, work)
	if len(data) > maxMountData {
		return "", fmt.Errorf("rootfs %s: %d layers make overlay options of %d bytes, over the kernel's %d", id, len(lowers), len(data), maxMountData)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		// index=off is unknown to old kernels; retry without it.
		data = strings.TrimSuffix(data, ",index=off")
		if err2 := unix.Mount("overlay", target, "overlay", 0, data); err2 != nil {
			return "", fmt.Errorf("rootfs %s: mount overlay on %s: %w", id, target, err2)
		}
	}
	return target, nil
}

// Unmount unmounts the rootfs, removes its mount point and deletes the
// writable layer; the rest of the container's directory is not its to
// remove. It is idempotent. An idmapped rootfs is one mount as well: its
// idmapped layers are detached mounts that only the overlay holds, never
// in the mount table, so a crash cannot leave them behind.
func (m *Manager) Unmount(ctx context.Context, id string) error {
	if err := m.Detach(ctx, id); err != nil {
		return err
	}
	target := m.path(id)
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rootfs %s: %w", id, err)
	}
	if err := os.RemoveAll(filepath.Join(m.RootDir, id)); err != nil {
		return fmt.Errorf("rootfs %s: remove writable layer: %w", id, err)
	}
	return nil
}

// Detach unmounts the rootfs and keeps its writable layer, whose usage stays
// readable until Unmount: what a container that exited still holds. It is
// idempotent.
func (m *Manager) Detach(ctx context.Context, id string) error {
	target := m.path(id)
	for mounted(target) {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("rootfs %s: unmount %s: %w", id, target, err)
		}
	}
	return nil
}

func (m *Manager) path(id string) string { return m.Containers.Rootfs(id) }

// mounted reports whether path is a mount point (its device differs from
// its parent's, or it is an overlay whose root inode says so).
func mounted(path string) bool {
	var st, pst unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	if err := unix.Lstat(filepath.Dir(path), &pst); err != nil {
		return false
	}
	return st.Dev != pst.Dev
}
