package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// knownCaps names every capability this build knows.
var knownCaps = func() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}()

// allCaps is what "ALL" and privileged mean: every known capability the
// daemon itself holds, as containerd does. Granting one the daemon lacks
// would make capset fail (this machine's root, for one, lacks
// CAP_SYS_RESOURCE).
var allCaps = func() []string {
	self, err := capability.NewPid2(0)
	if err == nil {
		err = self.Load()
	}
	if err != nil {
		return knownCaps
	}
	var out []string
	for _, c := range capability.ListKnown() {
		if self.Get(capability.PERMITTED, c) && self.Get(capability.BOUNDING, c) {
			out = append(out, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return out
}()

// ensurePropagation checks that the mount holding src propagates the way a
// host-to-container (shared or slave) or bidirectional (shared) volume needs;
// otherwise the container would silently never see new mounts.
func ensurePropagation(src string, needShared bool) error {
	mi, err := mountOf(src)
	if err != nil {
		return err
	}
	opts := " " + strings.ReplaceAll(mi.Optional, ",", " ") + " "
	shared := strings.Contains(opts, " shared:")
	slave := strings.Contains(opts, " master:")
	if needShared && !shared {
		return errdefs.FailedPrecondition("bidirectional propagation of %s needs its mount %s to be shared", src, mi.Mountpoint)
	}
	if !shared && !slave {
		return errdefs.FailedPrecondition("host-to-container propagation of %s needs its mount %s to be shared or slave", src, mi.Mountpoint)
	}
	return nil
}

// mountOf finds the mount that contains path (the longest mountpoint prefix).
func mountOf(path string) (*mountinfo.Info, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range infos {
		mp := m.Mountpoint
		if path == mp || mp == "/" || strings.HasPrefix(path, mp+"/") {
			if best == nil || len(mp) >= len(best.Mountpoint) {
				best = m
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s", path)
	}
	return best, nil
}

// deviceFromPath describes the device node at path for the spec.
func deviceFromPath(path, dst string) (*specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return nil, nil
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return &specs.LinuxDevice{
		Path: dst, Type: typ,
		Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, nil
}

// devicesAt returns the device at hostPath, or every device below it when it
// is a directory, mapped under containerPath.
func devicesAt(hostPath, containerPath string) ([]specs.LinuxDevice, error) {
	if !filepath.IsAbs(hostPath) || !filepath.IsAbs(containerPath) {
		return nil, errdefs.InvalidArgument("device paths %q -> %q must be absolute", hostPath, containerPath)
	}
	resolved, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.InvalidArgument("device %s does not exist on the node", hostPath)
		}
		return nil, fmt.Errorf("resolve device %s: %w", hostPath, err)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("stat device %s: %w", hostPath, err)
	}
	if !fi.IsDir() {
		d, err := deviceFromPath(resolved, containerPath)
		if err != nil {
			return nil, err
		}
		if d == nil {
			return nil, errdefs.InvalidArgument("%s is not a device node", hostPath)
		}
		return []specs.LinuxDevice{*d}, nil
	}
	var out []specs.LinuxDevice
	err = filepath.WalkDir(resolved, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(resolved, p)
		d, err := deviceFromPath(p, filepath.Join(containerPath, rel))
		if err != nil || d == nil {
			return err
		}
		out = append(out, *d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk devices in %s: %w", hostPath, err)
	}
	return out, nil
}

// hostDevices lists the node's device nodes for a privileged container,
// skipping the ones the executor always provides and pseudo-terminals.
func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	skip := map[string]bool{"/dev/pts": true, "/dev/shm": true, "/dev/mqueue": true, "/dev/console": true, "/dev/ptmx": true,
		"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/random": true, "/dev/urandom": true, "/dev/tty": true}
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				return nil
			}
			return err
		}
		if skip[p] {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() || e.Type()&fs.ModeDevice == 0 {
			return nil
		}
		d, err := deviceFromPath(p, p)
		if err != nil || d == nil {
			return nil
		}
		out = append(out, *d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices: %w", err)
	}
	return out, nil
}
