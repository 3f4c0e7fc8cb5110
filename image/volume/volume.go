// Package volume mounts images for containers' image volumes (KEP-4639,
// CRI Mount.image): an image's unpacked layers, read-only, once per image
// under the runtime state, for every container that mounts the image to
// bind from; and once per image and pod with a user namespace, idmapped
// with that namespace, for the pod's containers. Which containers use a
// mount, and so when it goes, is the CRI layer's to decide; this package
// only mounts and unmounts.
package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/image/rootfs"
	"github.com/skiffcri/skiff/internal/statedir"
)

// Layers gives the unpacked layer directories of an image, top-most first
// (the image store).
type Layers interface {
	LayerDirs(ctx context.Context, imageID string) ([]string, error)
}

// Manager mounts images at Mounts.Mount(<hex of the image ID>), and for
// pods with a user namespace at Mounts.PodMount(<hex>, <pod ID>). It is
// safe for concurrent use; it must not be copied after first use.
type Manager struct {
	Mounts statedir.ImageVolumes // e.g. /run/skiff/image-volumes
	Layers Layers

	// mu serialises Mount and Unmount, so that two calls for one image
	// never stack two mounts on its mount point, nor unmount one that a
	// concurrent Mount has just reported.
	mu sync.Mutex
}

// maxMountData is the kernel's limit for the options string of mount(2).
const maxMountData = 4096 - 1

// MountOptions choose which of an image's mounts Mount makes.
type MountOptions struct {
	// Pod and UserNS, set together, ask for pod Pod's own mount of the
	// image, shared by the pod's containers: its layers idmapped with the
	// pod's user namespace at UserNS (e.g. the pinned
	// /run/skiff/pods/<id>/ns/user), so that the image's files owned by
	// root belong to the pod's root. Containers bind it as it is: the
	// overlay of a multi-layer image cannot be idmapped (overlayfs does
	// not allow it), nor can an idmapped mount be idmapped again. Unset,
	// the mount is the image's plain one, shared by every container.
	Pod, UserNS string
}

// Mount mounts the image's layers read-only and returns the mount point.
// It is idempotent: an image that is mounted returns its mount point, one
// whose mount is gone (the state was on a tmpfs and the host rebooted) is
// mounted again.
func (m *Manager) Mount(ctx context.Context, imageID string, opts MountOptions) (string, error) {
	if (opts.Pod == "") != (opts.UserNS == "") {
		return "", errdefs.InvalidArgument("image volume %s: a pod's mount needs both the pod (%q) and its user namespace (%q)", imageID, opts.Pod, opts.UserNS)
	}
	target, err := m.path(imageID, opts.Pod)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok, err := isMounted(target); err != nil {
		return "", fmt.Errorf("image volume %s: %w", imageID, err)
	} else if ok {
		return target, nil
	}
	lowers, err := m.Layers.LayerDirs(ctx, imageID)
	if err != nil {
		return "", fmt.Errorf("image volume %s: %w", imageID, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("image volume %s: %w", imageID, err)
	}
	switch {
	case opts.UserNS != "":
		if len(lowers) == 0 {
			// As below, the empty mount point shows an image without
			// layers, idmapped onto itself.
			lowers = []string{target}
		}
		err = rootfs.MountReadOnlyIDMapped(lowers, target, opts.UserNS)
	case len(lowers) == 0:
		// An image without layers shows an empty directory: the mount
		// point itself, bound read-only onto itself so that it is a mount
		// like the others and cannot be written through.
		err = bindReadOnly(target, target)
	case len(lowers) == 1:
		// overlay refuses a single lower layer without an upper one
		// (6.18 still does), and a read-only bind of the layer is the same
		// view.
		err = bindReadOnly(lowers[0], target)
	default:
		err = overlayReadOnly(lowers, target)
	}
	if err != nil {
		_ = os.Remove(target)
		return "", fmt.Errorf("image volume %s: %w", imageID, err)
	}
	return target, nil
}

// Unmount unmounts the image's mount of pod (its plain mount when pod is
// "") and removes the mount point. It is idempotent. Containers that bound
// the mount keep their copies: their mount namespaces hold the image's
// filesystem.
func (m *Manager) Unmount(ctx context.Context, imageID, pod string) error {
	target, err := m.path(imageID, pod)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		ok, err := isMounted(target)
		if err != nil {
			return fmt.Errorf("image volume %s: %w", imageID, err)
		}
		if !ok {
			break
		}
		// Detached, as the rootfs is: a process of the host that looks
		// into the mount (a backup agent's cwd) must not keep it.
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // not a mount point after all
			}
			return fmt.Errorf("image volume %s: %w", imageID, &os.PathError{Op: "umount", Path: target, Err: err})
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image volume %s: %w", imageID, err)
	}
	return nil
}

// path is the mount point of imageID for pod ("": the plain mount).
// imageID must be a full image ID ("sha256:" and 64 hex digits) and pod a
// pod ID (64 hex digits), since they become a path element.
func (m *Manager) path(imageID, pod string) (string, error) {
	hex, ok := strings.CutPrefix(imageID, "sha256:")
	if !ok || !isDigest(hex) {
		return "", errdefs.InvalidArgument("image volume: %q is not a full image ID (sha256:<64 hex digits>)", imageID)
	}
	if pod == "" {
		return m.Mounts.Mount(hex), nil
	}
	if !isDigest(pod) {
		return "", errdefs.InvalidArgument("image volume %s: %q is not a pod ID (64 hex digits)", imageID, pod)
	}
	return m.Mounts.PodMount(hex, pod), nil
}

// isDigest reports whether s is 64 lower-case hex digits.
func isDigest(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// isMounted reports whether path is a mount point; a path that does not
// exist is not one. It asks the kernel rather than comparing devices: the
// bind of a layer on the state's own filesystem has its parent's device.
func isMounted(path string) (bool, error) {
	ok, err := mountinfo.Mounted(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return ok, err
}

// bindReadOnly binds src on target, read-only and without devices (an
// image's bottom layer may hold overlay whiteouts, character devices 0:0,
// which the overlay of several layers hides but a bind shows).
func bindReadOnly(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind " + src, Path: target, Err: err}
	}
	// A bind takes its flags only from a remount.
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return &os.PathError{Op: "remount read-only", Path: target, Err: err}
	}
	return nil
}

// overlayReadOnly mounts an overlay of lowers (top-most first) with no
// upper layer, which overlay only allows read-only.
func overlayReadOnly(lowers []string, target string) error {
	for _, l := range lowers {
		if strings.ContainsAny(l, ":,") {
			return fmt.Errorf("layer path %q contains an overlay separator", l)
		}
	}
	data := "lowerdir=" + strings.Join(lowers, ":")
	if len(data) > maxMountData {
		return fmt.Errorf("%d layers make overlay options of %d bytes, over the kernel's %d", len(lowers), len(data), maxMountData)
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY|unix.MS_NODEV, data); err != nil {
		return &os.PathError{Op: "mount overlay", Path: target, Err: err}
	}
	return nil
}

// SubPath resolves sub, an image volume's image_sub_path, inside the image
// mounted at mount, and returns the path to bind. sub must be relative and
// clean, and must name something that exists; errors caused by sub wrap
// errdefs.ErrInvalidArgument. An empty sub is the whole image.
//
// Symlinks on the way are followed with securejoin, inside the image. One
// whose target lies outside the image (absolute, or climbing above the
// image's root with "..") is refused rather than reinterpreted: seen from
// the container, where the image is a volume and not the root, it leads
// out of the volume, so binding what securejoin makes of it would show
// something the path does not name there.
func SubPath(mount, sub string) (string, error) {
	if sub == "" {
		return mount, nil
	}
	if filepath.IsAbs(sub) || filepath.Clean(sub) != sub || sub == ".." || strings.HasPrefix(sub, "../") {
		return "", errdefs.InvalidArgument("sub path %q is not a clean relative path", sub)
	}
	// The mount point's own path may go through host symlinks (a state
	// dir under /var/run); only those below it are the image's.
	root, err := filepath.EvalSymlinks(mount)
	if err != nil {
		return "", fmt.Errorf("sub path %q: resolve the image's mount point: %w", sub, err)
	}
	p, err := securejoin.SecureJoin(root, sub)
	if errors.Is(err, unix.ELOOP) {
		return "", errdefs.InvalidArgument("sub path %q: too many levels of symlinks", sub)
	} else if err != nil {
		return "", fmt.Errorf("sub path %q: %w", sub, err)
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return "", errdefs.InvalidArgument("sub path %q does not exist in the image", sub)
	} else if err != nil {
		return "", fmt.Errorf("sub path %q: %w", sub, err)
	}
	// Followed as the host follows them, the symlinks must lead to the
	// same place, inside the image: then none of them left it.
	if host, err := filepath.EvalSymlinks(filepath.Join(root, sub)); err != nil || host != p {
		return "", errdefs.InvalidArgument("sub path %q: a symlink on it leads outside the image", sub)
	}
	return p, nil
}
