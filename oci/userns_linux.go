package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/oci/nsenter"
)

// A container in a user namespace cannot reach most of the host: its root
// is an unprivileged host uid, so it can neither walk root-only directories
// (the kubelet's volume dirs) to a bind mount's source nor make idmapped
// mounts. The executor therefore opens every bind mount's source on the
// host side, as a detached mount (open_tree(OPEN_TREE_CLONE)), idmaps it
// when the spec asks (mount_setattr(MOUNT_ATTR_IDMAP) with the container's
// user namespace), and hands the fds to the init, which attaches them with
// move_mount inside its own mount namespace.

// userNSJoin has the launch start the pre-runtime stage (skiff-nsenter at
// path) instead of the init: it joins the user namespace at ExtraFiles
// index nsIndex, unshares the flags, and executes the init binary at index
// initIndex with the launch's argv; its messages go to the launch's sync
// socket.
func userNSJoin(l *launch, path string, unshare uintptr, nsIndex, initIndex int) {
	l.cmd.Path = path
	l.addEnvFD(nsenter.EnvUserNS, nsIndex)
	l.addEnvFD(nsenter.EnvExecFD, initIndex)
	l.cmd.Env = append(l.cmd.Env,
		nsenter.EnvUnshare+"="+strconv.FormatUint(uint64(unshare), 10),
		nsenter.EnvSyncFD+"=4") // the launch's sync socket
}

// nsenterPath finds skiff-nsenter: NSEnterPath, or next to the init
// binary, or next to this executable.
func (e *Executor) nsenterPath() (string, error) {
	if e.NSEnterPath == "" {
		return nsenter.Beside(e.InitPath)
	}
	if err := unix.Access(e.NSEnterPath, unix.X_OK); err != nil {
		return "", errdefs.FailedPrecondition("joining a user namespace needs %s, the executor's pre-runtime stage: %v", e.NSEnterPath, err)
	}
	return e.NSEnterPath, nil
}

// openInit opens the init binary for the pre-runtime stage to execute
// (execveat): the stage runs as the namespace's root, which may not walk
// to the binary's directory.
func (e *Executor) openInit() (*os.File, error) {
	f, err := os.OpenFile(e.initPath(), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open init binary: %w", err)
	}
	return f, nil
}

// newUserNS sets up a new user namespace at clone time with the spec's
// maps. The init runs as the namespace's root from the start: a process
// whose uid the namespace does not map would lose its capabilities at
// execve. So the executor's binary must be executable by that uid (it is,
// installed in /usr/local/bin).
func newUserNS(attr *syscall.SysProcAttr, l *specs.Linux) {
	conv := func(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
		out := make([]syscall.SysProcIDMap, len(m))
		for i, x := range m {
			out[i] = syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)}
		}
		return out
	}
	attr.UidMappings = conv(l.UIDMappings)
	attr.GidMappings = conv(l.GIDMappings)
	attr.GidMappingsEnableSetgroups = true
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
}

// readInitPid reads the host pid of the init from the pre-runtime stage,
// which forks it when the container gets a new PID namespace.
func (l *launch) readInitPid(ctx context.Context) (int, error) {
	stop := context.AfterFunc(ctx, func() { l.sync.SetReadDeadline(time.Now()) })
	defer stop()
	defer l.sync.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	n, err := l.sync.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("read from init: %w", err)
	}
	return nsenter.ParsePid(buf[:n])
}

// openMountSources opens the source of every bind mount in spec as a
// detached mount, idmapped with userns when the mount has ID mappings. It
// returns the files in mount order, nil for mounts that are not binds.
func openMountSources(spec *specs.Spec, userns *os.File) (_ []*os.File, retErr error) {
	files := make([]*os.File, len(spec.Mounts))
	defer func() {
		if retErr != nil {
			closeFiles(files)
		}
	}()
	for i, m := range spec.Mounts {
		opts := parseMountOptions(m.Options)
		if m.Type != "bind" && !opts.isBind() {
			if len(m.UIDMappings)+len(m.GIDMappings) > 0 {
				return nil, errdefs.InvalidArgument("mount %s: ID mappings on a %s mount (only bind mounts can be idmapped)", m.Destination, m.Type)
			}
			continue
		}
		flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		if opts.flags&unix.MS_REC != 0 {
			flags |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, m.Source, flags)
		if err != nil {
			return nil, fmt.Errorf("bind mount source for %s: open_tree %s: %w", m.Destination, m.Source, err)
		}
		files[i] = os.NewFile(uintptr(fd), m.Source)
		if len(m.UIDMappings)+len(m.GIDMappings) == 0 {
			continue
		}
		if userns == nil || !slices.Equal(m.UIDMappings, spec.Linux.UIDMappings) || !slices.Equal(m.GIDMappings, spec.Linux.GIDMappings) {
			return nil, errdefs.InvalidArgument("mount %s: ID mappings other than the container's user namespace's are not supported", m.Destination)
		}
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
		setFlags := unix.AT_EMPTY_PATH
		if flags&unix.AT_RECURSIVE != 0 {
			setFlags |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(fd, "", uint(setFlags), &attr); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
				return nil, errdefs.FailedPrecondition("mount %s: the filesystem of %s cannot be idmapped (mount_setattr: %v)", m.Destination, m.Source, err)
			}
			return nil, fmt.Errorf("mount %s: idmap %s: %w", m.Destination, m.Source, err)
		}
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
