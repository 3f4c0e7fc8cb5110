package rootfs

// Idmapped rootfs for containers in a user namespace. Each layer, and the
// container's base directory holding upper and work (overlay wants both on
// one mount), becomes a detached idmapped clone (open_tree, mount_setattr)
// that is handed to overlay as a file descriptor (fsconfig FSCONFIG_SET_FD).
// The clones never appear in the mount table: no temporary mount points to
// clean after a crash, and no option string whose 4095 bytes cap the number
// of layers. Overlay takes detached and O_PATH layers from Linux 6.15 on.
// Read-only mounts of an image in a user namespace (image volumes) are the
// same overlay without the writable layer (MountReadOnlyIDMapped).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// nsGetNSType is the NS_GET_NSTYPE ioctl, _IO(0xb7, 0x3), which x/sys does
// not name.
const nsGetNSType = 0xb703

// SupportsIDMap reports whether dir's filesystem can be idmapped with the
// user namespace at usernsPath (nil error) or why not. It checks what Mount
// with MountOptions.UserNS needs, not only mount_setattr: it builds, in a
// scratch directory it makes in dir and removes, an idmapped overlay with a
// lower and a writable layer there, and never attaches it. Call it on the
// image layers' directory and on the writable layers' (Manager.RootDir).
func SupportsIDMap(dir, usernsPath string) error {
	ns, err := openUserNS(usernsPath)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	scratch, err := os.MkdirTemp(dir, ".idmap-probe-")
	if err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	defer os.RemoveAll(scratch)
	lower := filepath.Join(scratch, "lower")
	for _, d := range []string{lower, filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("idmap probe: %w", err)
		}
	}
	mnt, err := idmappedOverlay([]string{lower}, scratch, ns)
	if err != nil {
		return fmt.Errorf("idmap probe in %s: %w", dir, err)
	}
	// Never attached, the overlay goes with its last descriptor.
	unix.Close(mnt)
	return nil
}

// mountIDMapped mounts at target the overlay of lowers (top-most first) and
// base/{upper,work}, each layer idmapped with the user namespace at
// usernsPath. On error nothing is mounted.
func mountIDMapped(lowers []string, base, target, usernsPath string) error {
	ns, err := openUserNS(usernsPath)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	mnt, err := idmappedOverlay(lowers, base, ns)
	if err != nil {
		return err
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(mnt, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach overlay: %w", &os.PathError{Op: "move_mount", Path: target, Err: err})
	}
	return nil
}

// MountReadOnlyIDMapped mounts at target a read-only, nodev view of lowers
// (top-most first, at least one), each layer idmapped with the user
// namespace at usernsPath, so that the layers' root-owned files belong to
// the namespace's root: an overlay of the idmapped layers without an upper
// layer or, for a single layer, which overlay refuses without an upper
// one, the layer's idmapped clone. It serves an image's read-only mounts
// (image volumes) in a user namespace, where idmapping the overlay itself
// is not possible (overlayfs cannot be idmapped) but idmapping its layers
// is. On error nothing is mounted.
func MountReadOnlyIDMapped(lowers []string, target, usernsPath string) error {
	if len(lowers) == 0 {
		return fmt.Errorf("read-only idmapped mount on %s: no layers", target)
	}
	ns, err := openUserNS(usernsPath)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	var mnt int
	if len(lowers) == 1 {
		mnt, err = readOnlyIDMapTree(lowers[0], ns)
	} else {
		mnt, err = idmappedOverlayReadOnly(lowers, ns)
	}
	if err != nil {
		return err
	}
	defer unix.Close(mnt)
	if err := unix.MoveMount(mnt, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach read-only idmapped mount: %w", &os.PathError{Op: "move_mount", Path: target, Err: err})
	}
	return nil
}

// readOnlyIDMapTree is the idmapped clone of the mount at dir, read-only
// and nodev.
func readOnlyIDMapTree(dir string, ns int) (int, error) {
	tree, err := idmapTree(dir, ns)
	if err != nil {
		return -1, fmt.Errorf("idmap layer %s: %w", dir, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("layer %s: mount_setattr read-only: %w", dir, err)
	}
	return tree, nil
}

// openUserNS opens the user namespace file at path and checks that it is
// one an idmapping can be made with.
func openUserNS(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("user namespace: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	// Checked here because mount_setattr answers EINVAL alike for a file
	// that is no user namespace and for a filesystem that cannot idmap.
	if t, err := unix.IoctlRetInt(fd, nsGetNSType); err != nil || t != unix.CLONE_NEWUSER {
		unix.Close(fd)
		return -1, fmt.Errorf("user namespace %s: not a user namespace file", path)
	}
	var st, own unix.Stat_t
	if unix.Fstat(fd, &st) == nil && unix.Stat("/proc/self/ns/user", &own) == nil && st.Dev == own.Dev && st.Ino == own.Ino {
		unix.Close(fd)
		return -1, fmt.Errorf("user namespace %s: the daemon's own, which the kernel does not idmap with (it would map nothing)", path)
	}
	return fd, nil
}

// idmappedOverlay makes a detached overlay mount of lowers and
// base/{upper,work}, each layer idmapped with the user namespace ns, and
// returns its descriptor, which the caller attaches or closes.
func idmappedOverlay(lowers []string, base string, ns int) (int, error) {
	fs, fds, err := overlayOfIDMappedLowers(lowers, ns)
	defer func() { closeAll(fds) }()
	if err != nil {
		return -1, err
	}
	tree, err := idmapTree(base, ns)
	if err != nil {
		return -1, fmt.Errorf("idmap writable layer %s: %w", base, err)
	}
	fds = append(fds, tree)
	uid, gid, err := mappedRoot(base, tree)
	if err != nil {
		return -1, err
	}
	for _, l := range []struct{ key, dir string }{{"upperdir", "upper"}, {"workdir", "work"}} {
		fd, err := unix.Openat(tree, l.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: filepath.Join(base, l.dir), Err: err}
		}
		fds = append(fds, fd)
		if err := unix.FsconfigSetFd(fs, l.key, fd); err != nil {
			return -1, fmt.Errorf("overlay %s %s: %w", l.key, filepath.Join(base, l.dir), fsconfigErr(fs, l.key, err))
		}
	}
	if err := unix.FsconfigSetString(fs, "index", "off"); err != nil {
		return -1, fmt.Errorf("overlay: %w", fsconfigErr(fs, "index=off", err))
	}
	// Overlay works in its layers with the credentials of whoever creates
	// the superblock. Host root has no id in the namespace, so through the
	// idmapped writable layer it could create nothing (EOVERFLOW): not the
	// work directory, nor copies up and whiteouts. The superblock is created
	// with the filesystem ids of the namespace's root instead, which land on
	// disk as 0.
	err = withFSIDs(uid, gid, func() error { return unix.FsconfigCreate(fs) })
	if err != nil {
		return -1, fmt.Errorf("create overlay: %w", fsconfigErr(fs, "create", err))
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("fsmount overlay: %w", err)
	}
	// Overlay falls back to read-only, logging to the kernel log only,
	// when it cannot make its work directory.
	var st unix.Statfs_t
	if err := unix.Fstatfs(mnt, &st); err != nil {
		unix.Close(mnt)
		return -1, fmt.Errorf("statfs overlay: %w", err)
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		unix.Close(mnt)
		return -1, fmt.Errorf("overlay came up read-only: it could not make its work directory in %s as the user namespace's root (host %d:%d); does the namespace map container root, is the filesystem writable?", filepath.Join(base, "work"), uid, gid)
	}
	return mnt, nil
}

// idmappedOverlayReadOnly makes a detached read-only, nodev overlay mount
// of lowers (two at least), each idmapped with the user namespace ns, with
// no upper layer, and returns its descriptor.
//
// Unlike a writable overlay it is created with the caller's own
// credentials, without the switch to the namespace root's filesystem ids:
// an overlay without an upper layer has no work directory and never copies
// up or makes whiteouts, so its creator only reads through the idmapped
// layers, and host root may read anything there (the host ids the layers
// show are the initial namespace's, over which its capabilities hold).
func idmappedOverlayReadOnly(lowers []string, ns int) (int, error) {
	fs, fds, err := overlayOfIDMappedLowers(lowers, ns)
	defer func() { closeAll(fds) }()
	if err != nil {
		return -1, err
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create read-only overlay: %w", fsconfigErr(fs, "create", err))
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount read-only overlay: %w", err)
	}
	return mnt, nil
}

// overlayOfIDMappedLowers opens an overlay filesystem context (the first
// descriptor returned) and gives it lowers, top-most first, as detached
// clones idmapped with the user namespace ns. The caller closes every
// descriptor returned, the context's included, on error too, but only once
// the superblock exists: closing a detached mount's last descriptor
// unmounts it, and overlay clones its layers' mounts only at creation.
func overlayOfIDMappedLowers(lowers []string, ns int) (fs int, fds []int, _ error) {
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("fsopen overlay: %w", err)
	}
	fds = append(fds, fs)
	for _, dir := range lowers {
		tree, err := idmapTree(dir, ns)
		if err != nil {
			return -1, fds, fmt.Errorf("idmap layer %s: %w", dir, err)
		}
		fds = append(fds, tree)
		if err := unix.FsconfigSetFd(fs, "lowerdir+", tree); err != nil {
			return -1, fds, fmt.Errorf("overlay layer %s: %w", dir, fsconfigErr(fs, "lowerdir+", err))
		}
	}
	return fs, fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// idmapTree returns a detached clone of the mount at dir, idmapped with the
// user namespace ns.
func idmapTree(dir string, ns int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree: %w%s", err, hint(err, map[unix.Errno]string{
			unix.ENOSYS: "the kernel has no open_tree (Linux 5.2)",
		}))
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount_setattr: %w%s", err, hint(err, map[unix.Errno]string{
			unix.EINVAL:     "the layer filesystem cannot idmap",
			unix.EOPNOTSUPP: "the layer filesystem or kernel cannot idmap",
			unix.ENOSYS:     "the kernel has no mount_setattr (Linux 5.12)",
			unix.EPERM:      "not privileged over the filesystem or the user namespace",
		}))
	}
	return fd, nil
}

// mappedRoot returns the host ids that uid and gid 0 map to in the idmapped
// clone tree of base: base is owned by host root, and the clone shows its
// owner through the namespace's mappings.
func mappedRoot(base string, tree int) (uid, gid int, err error) {
	var host, mapped unix.Stat_t
	if err := unix.Lstat(base, &host); err != nil {
		return 0, 0, &os.PathError{Op: "lstat", Path: base, Err: err}
	}
	if host.Uid != 0 || host.Gid != 0 {
		return 0, 0, fmt.Errorf("writable layer %s is owned by %d:%d, not root", base, host.Uid, host.Gid)
	}
	if err := unix.Fstat(tree, &mapped); err != nil {
		return 0, 0, fmt.Errorf("idmapped %s: %w", base, &os.PathError{Op: "fstat", Path: base, Err: err})
	}
	return int(mapped.Uid), int(mapped.Gid), nil
}

// withFSIDs runs fn on a locked OS thread whose filesystem uid and gid are
// uid and gid and whose capabilities are kept: the kernel drops the
// file-system capabilities from the effective set when the fsuid leaves 0,
// and overlay needs them (CAP_CHOWN, CAP_MKNOD, CAP_DAC_OVERRIDE ...) to
// copy files up and make whiteouts. The thread is thrown away afterwards so
// that its credentials never reach another goroutine.
//
// The main thread, which the runtime cannot terminate, is kept busy instead
// while a nested goroutine, necessarily on another thread, does the work.
func withFSIDs(uid, gid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			errc <- withFSIDs(uid, gid, fn)
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: exiting locked makes the runtime end the thread.
		errc <- func() error {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var caps [2]unix.CapUserData
			if err := unix.Capget(&hdr, &caps[0]); err != nil {
				return fmt.Errorf("capget: %w", err)
			}
			// setfs[ug]id report no errors; an invalid id (-1) reads the
			// current one back.
			_, _ = unix.SetfsgidRetGid(gid)
			_, _ = unix.SetfsuidRetUid(uid)
			if got, _ := unix.SetfsgidRetGid(-1); got != gid {
				return fmt.Errorf("setfsgid %d: fsgid stayed %d", gid, got)
			}
			if got, _ := unix.SetfsuidRetUid(-1); got != uid {
				return fmt.Errorf("setfsuid %d: fsuid stayed %d", uid, got)
			}
			if err := unix.Capset(&hdr, &caps[0]); err != nil {
				return fmt.Errorf("capset: %w", err)
			}
			return fn()
		}()
	}()
	return <-errc
}

// fsconfigErr adds to err of fsconfig what the kernel logged to the
// filesystem context fs, which is often the only account of the cause.
func fsconfigErr(fs int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, rerr := unix.Read(fs, buf)
		if rerr != nil || n <= 0 {
			break
		}
		// Each message is one read, prefixed by its level ("e ", "w ").
		msgs = append(msgs, string(bytes.TrimSpace(buf[:n])))
	}
	var errno unix.Errno
	if errors.As(err, &errno) && errno == unix.EINVAL {
		msgs = append(msgs, "overlay takes detached idmapped layers as file descriptors from Linux 6.15")
	}
	if len(msgs) == 0 {
		return fmt.Errorf("fsconfig %s: %w", what, err)
	}
	return fmt.Errorf("fsconfig %s: %w (%s)", what, err, strings.Join(msgs, "; "))
}

// hint returns " (why)" for the errno of err found in hints, or "".
func hint(err error, hints map[unix.Errno]string) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if h, ok := hints[errno]; ok {
			return " (" + h + ")"
		}
	}
	return ""
}
