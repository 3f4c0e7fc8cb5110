package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountError names the step that failed, e.g. "mount proc on /proc: permission denied".
func mountError(src, dest, typ string, err error) error {
	if typ == "" || typ == "bind" {
		return fmt.Errorf("mount %s on %s: %w", src, dest, err)
	}
	return fmt.Errorf("mount %s on %s (%s): %w", src, dest, typ, err)
}

// defaultDevices are created in every container, as the runtime-spec
// requires.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: fileMode(0o666)},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: fileMode(0o666)},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: fileMode(0o666)},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: fileMode(0o666)},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: fileMode(0o666)},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: fileMode(0o666)},
}

func fileMode(m os.FileMode) *os.FileMode { return &m }

// defaultDevSymlinks point the usual /dev names at /proc.
var defaultDevSymlinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
	{"/proc/kcore", "/dev/core"},
}

// setupRootfs prepares the container's mount tree and pivots into it.
// inCgroup waits until the init is in its cgroup (see cgroupBarrier); it is
// called before the first cgroup mount and before the spec's device nodes.
// beforePivot, when not nil, runs once the mounts and devices are made,
// before pivot_root (the create hooks). Runs in the container's new mount
// namespace.
func setupRootfs(cfg *initConfig, inCgroup, beforePivot func() error) error {
	spec := cfg.Spec
	rootfs, err := filepath.EvalSymlinks(cfg.Rootfs)
	if errors.Is(err, unix.EACCES) {
		return fmt.Errorf("resolve rootfs: %w (in a user namespace, every directory above the rootfs must be searchable by others)", err)
	}
	if err != nil {
		return fmt.Errorf("resolve rootfs: %w", err)
	}
	// By default our mounts stop propagating to the host (rslave). A shared
	// rootfs propagation (bidirectional volumes) keeps the namespace's
	// mounts peers of the host's, so a volume bound from a shared host
	// mount stays in the host's peer group and mounts made in the
	// container reach the host.
	prop := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if rp := spec.Linux.RootfsPropagation; rp != "" {
		p, ok := propagationOpts[rp]
		if !ok {
			return fmt.Errorf("unknown rootfsPropagation %q", rp)
		}
		prop = p
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return mountError("", "/", "propagation", err)
	}
	// The mount holding the rootfs must not be shared: the self-bind below
	// would propagate to the host, and pivot_root refuses a shared parent.
	// After a recursive change to anything but shared no mount is (the
	// default), and finding the mount would read all of mountinfo.
	if prop&unix.MS_REC == 0 || prop&unix.MS_SHARED != 0 {
		if err := makeParentPrivate(rootfs); err != nil {
			return err
		}
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return mountError(rootfs, rootfs, "bind", err)
	}
	if cfg.MountFDs != nil && len(cfg.MountFDs) != len(spec.Mounts) {
		return fmt.Errorf("%d mount fds for %d mounts", len(cfg.MountFDs), len(spec.Mounts))
	}
	// Read at the first cgroup mount, once the init is in its cgroup
	// (and cgroup namespace).
	var cgroupHost *cgroupHost
	for i, m := range spec.Mounts {
		if (m.Type == "cgroup" || m.Type == "cgroup2") && cgroupHost == nil {
			if err := inCgroup(); err != nil {
				return err
			}
			if cgroupHost, err = readCgroupHost(cfg.hostCgroups, cfg.NewCgroupNS); err != nil {
				return err
			}
		}
		src := -1
		if cfg.MountFDs != nil {
			src = cfg.MountFDs[i]
		}
		if err := mountEntry(rootfs, m, src, cgroupHost); err != nil {
			return err
		}
	}
	if spec.Linux != nil && len(spec.Linux.Devices) > 0 {
		// A v1 devices cgroup decides which nodes mknod may make.
		if err := inCgroup(); err != nil {
			return err
		}
	}
	if err := createDevices(rootfs, spec); err != nil {
		return err
	}
	if beforePivot != nil {
		if err := beforePivot(); err != nil {
			return err
		}
	}
	if err := pivotRoot(rootfs); err != nil {
		return err
	}
	// The new root came from a private bind; give it the shared
	// propagation now that pivot_root is done.
	if prop&unix.MS_SHARED != 0 {
		if err := unix.Mount("", "/", "", prop, ""); err != nil {
			return mountError("", "/", "propagation", err)
		}
	}
	return nil
}

// makeParentPrivate makes the mount that contains path private (only that
// mount, not its children).
func makeParentPrivate(path string) error {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	best := ""
	for _, m := range infos {
		mp := m.Mountpoint
		if (path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")) && len(mp) >= len(best) {
			best = mp
		}
	}
	if best == "" {
		return fmt.Errorf("no mount holds %s", path)
	}
	if err := unix.Mount("", best, "", unix.MS_PRIVATE, ""); err != nil {
		return mountError("", best, "propagation", err)
	}
	return nil
}

// createMountpoint makes dest a directory or an empty file.
func createMountpoint(dest string, dir bool) error {
	if dir {
		return os.MkdirAll(dest, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	return createFile(dest)
}

func createFile(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, unix.EISDIR) {
			return nil
		}
		return err
	}
	return f.Close()
}

// keptFlags are the per-mount flags a bind remount must repeat, or the
// kernel clears them (and refuses, if they are locked).
const keptFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME

// remountBind changes the flags of the bind mount at dest, keeping the
// flags it already has unless clear names them.
func remountBind(dest string, flags, clear uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dest, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: dest, Err: err}
	}
	flags |= uintptr(st.Flags) & keptFlags &^ clear
	if err := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
		return mountError("", dest, "remount", err)
	}
	return nil
}

// remountReadonly makes the mount at dest read-only.
func remountReadonly(dest string) error {
	return remountBind(dest, unix.MS_RDONLY, 0)
}

// mountEntry performs one spec mount under rootfs (before pivot_root).
// src, when not -1, is a detached mount of a bind mount's source that the
// parent prepared (see openMountSources); it is attached instead of binding
// m.Source.
func mountEntry(rootfs string, m specs.Mount, src int, cgroupHost *cgroupHost) error {
	opts := parseMountOptions(m.Options)
	dest, err := securejoin.SecureJoin(rootfs, m.Destination)
	if err != nil {
		return fmt.Errorf("resolve mount destination %s: %w", m.Destination, err)
	}
	switch {
	case (m.Type == "bind" || opts.isBind()) && src >= 0:
		var st unix.Stat_t
		if err := unix.Fstat(src, &st); err != nil {
			return fmt.Errorf("bind mount source for %s: %w", m.Destination, err)
		}
		if err := createMountpoint(dest, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return fmt.Errorf("create mountpoint %s: %w", m.Destination, err)
		}
		if err := unix.MoveMount(src, "", unix.AT_FDCWD, dest, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return mountError(m.Source, m.Destination, "move_mount", err)
		}
		unix.Close(src)
		if err := remountBindFlags(dest, opts); err != nil {
			return fmt.Errorf("bind mount %s: %w", m.Destination, err)
		}
	case m.Type == "bind" || opts.isBind():
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("bind mount source for %s: %w", m.Destination, err)
		}
		if err := createMountpoint(dest, fi.IsDir()); err != nil {
			return fmt.Errorf("create mountpoint %s: %w", m.Destination, err)
		}
		if err := unix.Mount(m.Source, dest, "", unix.MS_BIND|(opts.flags&unix.MS_REC), ""); err != nil {
			return mountError(m.Source, m.Destination, "bind", err)
		}
		if err := remountBindFlags(dest, opts); err != nil {
			return fmt.Errorf("bind mount %s: %w", m.Destination, err)
		}
	case m.Type == "cgroup" || m.Type == "cgroup2":
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return fmt.Errorf("create mountpoint %s: %w", m.Destination, err)
		}
		if err := mountCgroup(dest, m, opts, cgroupHost); err != nil {
			return err
		}
	default:
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return fmt.Errorf("create mountpoint %s: %w", m.Destination, err)
		}
		err := unix.Mount(m.Source, dest, m.Type, opts.flags, opts.data)
		if m.Type == "sysfs" && errors.Is(err, unix.EPERM) {
			// In a user namespace that does not own the network
			// namespace, the kernel refuses a new sysfs; the host's, read
			// only, is what runc gives such a container.
			err = sysfsBind(dest, opts)
		}
		if err != nil {
			return mountError(m.Source, m.Destination, m.Type, err)
		}
	}
	for _, p := range opts.propagation {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return mountError("", m.Destination, "propagation", err)
		}
	}
	if opts.recSet != 0 || opts.recClr != 0 {
		attr := unix.MountAttr{Attr_set: opts.recSet, Attr_clr: opts.recClr}
		if err := unix.MountSetattr(-1, dest, unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("mount_setattr(AT_RECURSIVE) on %s: %w", m.Destination, err)
		}
	}
	return nil
}

// remountBindFlags applies the per-mount flags of a bind (read-only,
// nosuid, ...) that a bind itself ignores.
func remountBindFlags(dest string, opts mountOpts) error {
	if rest := opts.flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 || opts.clearFlags != 0 {
		return remountBind(dest, rest, opts.clearFlags)
	}
	return nil
}

// sysfsBind binds the host's /sys at dest, read-only unless opts say rw.
func sysfsBind(dest string, opts mountOpts) error {
	if err := unix.Mount("/sys", dest, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	flags := opts.flags & (unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	return remountBind(dest, flags, 0)
}

// createDevices creates the default and the spec's device nodes and the
// /dev symlinks under rootfs (before pivot_root).
func createDevices(rootfs string, spec *specs.Spec) error {
	devs := make([]specs.LinuxDevice, 0, len(defaultDevices)+len(spec.Linux.Devices))
	seen := map[string]bool{}
	for _, d := range spec.Linux.Devices {
		seen[d.Path] = true
		devs = append(devs, d)
	}
	for _, d := range defaultDevices {
		if !seen[d.Path] {
			devs = append(devs, d)
		}
	}
	for _, d := range devs {
		if err := createDevice(rootfs, d); err != nil {
			return err
		}
	}
	for _, l := range defaultDevSymlinks {
		dst, err := securejoin.SecureJoin(rootfs, l[1])
		if err != nil {
			return err
		}
		if err := os.Symlink(l[0], dst); err != nil && !os.IsExist(err) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == "/dev/pts" && m.Type == "devpts" {
			ptmx := filepath.Join(rootfs, "dev/ptmx")
			if err := os.Remove(ptmx); err != nil && !os.IsNotExist(err) {
				return err
			}
			if err := os.Symlink("pts/ptmx", ptmx); err != nil {
				return fmt.Errorf("symlink /dev/ptmx: %w", err)
			}
		}
	}
	return nil
}

func createDevice(rootfs string, d specs.LinuxDevice) error {
	dest, err := securejoin.SecureJoin(rootfs, d.Path)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dest); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	var mode uint32
	switch d.Type {
	case "c", "u":
		mode = unix.S_IFCHR
	case "b":
		mode = unix.S_IFBLK
	case "p":
		mode = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: unknown type %q", d.Path, d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	err = unix.Mknod(dest, mode|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
	if errors.Is(err, unix.EPERM) {
		// No CAP_MKNOD (or a nodev /dev): bind the host's node instead.
		if err := createFile(dest); err != nil {
			return err
		}
		if err := unix.Mount(d.Path, dest, "", unix.MS_BIND, ""); err != nil {
			return mountError(d.Path, d.Path, "bind", err)
		}
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "mknod", Path: d.Path, Err: err}
	}
	uid, gid := -1, -1
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if uid >= 0 || gid >= 0 {
		if err := unix.Lchown(dest, uid, gid); err != nil {
			return &os.PathError{Op: "chown", Path: d.Path, Err: err}
		}
	}
	return nil
}

// pivotRoot makes rootfs the root with pivot_root(".", ".") and detaches
// the old root stacked beneath it, so no directory for the old root is
// needed. Where pivot_root is impossible (EINVAL: rootfs on ramfs/initramfs)
// it falls back to MS_MOVE + chroot.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(oldroot)
	if err := unix.Chdir(rootfs); err != nil {
		return &os.PathError{Op: "chdir", Path: rootfs, Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return moveRoot(rootfs)
		}
		return &os.PathError{Op: "pivot_root", Path: rootfs, Err: err}
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return &os.PathError{Op: "fchdir", Path: "old root", Err: err}
	}
	// Keep the unmount of the old root from propagating to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return mountError("", "old root", "propagation", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount", Path: "old root", Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}

func moveRoot(rootfs string) error {
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return mountError(rootfs, "/", "move", err)
	}
	if err := unix.Chroot("."); err != nil {
		return &os.PathError{Op: "chroot", Path: rootfs, Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}

// maskPaths hides paths: directories under an empty read-only tmpfs,
// files under /dev/null. Runs after pivot_root.
func maskPaths(paths []string) error {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return fmt.Errorf("mask %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0k")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths bind-mounts paths onto themselves read-only. Runs after
// pivot_root.
func readonlyPaths(paths []string) error {
	for _, p := range paths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return mountError(p, p, "bind", err)
		}
		// Recursively, so submounts (binfmt_misc under /proc/sys) are
		// read-only too; plain remount where mount_setattr is missing.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		err := unix.MountSetattr(-1, p, unix.AT_RECURSIVE, &attr)
		if errors.Is(err, unix.ENOSYS) {
			err = remountBind(p, unix.MS_RDONLY, 0)
		}
		if err != nil {
			return fmt.Errorf("read-only path %s: %w", p, err)
		}
	}
	return nil
}
