package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// Mounts returns the container's mounts, sorted so parents come before their
// children, and the rootfs propagation the mounts need.
func Mounts(in Input, privileged, readonlyRoot bool) ([]specs.Mount, string, error) {
	// sysfs and the cgroup filesystem are writable only for privileged
	// containers.
	sysMode := "ro"
	if privileged {
		sysMode = "rw"
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysMode}},
		// The container's own cgroups, where JVMs, Go, Node.js and .NET
		// read their limits.
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysMode}},
	}
	if in.PodFiles.Shm != "" {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: in.PodFiles.Shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}})
	} else {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	podFile := func(dst, src string) {
		if src == "" {
			return
		}
		opts := []string{"rbind", "rprivate"}
		if readonlyRoot {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	hostNet := in.Pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		podFile("/etc/hostname", in.PodFiles.Hostname)
	}
	podFile("/etc/hosts", in.PodFiles.Hosts)
	podFile("/etc/resolv.conf", in.PodFiles.ResolvConf)

	rootProp := ""
	user := map[string]bool{}
	var userMounts []specs.Mount
	for _, m := range in.Container.GetMounts() {
		dst := filepath.Clean(m.ContainerPath)
		if !filepath.IsAbs(dst) {
			return nil, "", errdefs.InvalidArgument("mount container path %q is not absolute", m.ContainerPath)
		}
		if m.GetImage().GetImage() != "" {
			mnt, prop, err := imageVolume(in, m, dst)
			if err != nil {
				return nil, "", err
			}
			if prop != "" && rootProp == "" {
				rootProp = prop
			}
			user[dst] = true
			userMounts = append(userMounts, mnt)
			continue
		}
		if m.HostPath == "" {
			return nil, "", errdefs.InvalidArgument("mount %s has no host path", dst)
		}
		src, err := hostPath(m.HostPath)
		if err != nil {
			return nil, "", err
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := ensurePropagation(src, false); err != nil {
				return nil, "", err
			}
			opts = append(opts, "rslave")
			if rootProp == "" {
				rootProp = "rslave"
			}
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if !privileged {
				return nil, "", errdefs.InvalidArgument("bidirectional mount propagation of %s needs a privileged container", dst)
			}
			if err := ensurePropagation(src, true); err != nil {
				return nil, "", err
			}
			opts = append(opts, "rshared")
			rootProp = "rshared"
		default:
			return nil, "", errdefs.InvalidArgument("mount %s: unknown propagation %v", dst, m.Propagation)
		}
		if m.RecursiveReadOnly {
			if !m.Readonly {
				return nil, "", errdefs.InvalidArgument("mount %s: recursive read-only needs readonly", dst)
			}
			if m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, "", errdefs.InvalidArgument("mount %s: recursive read-only needs private propagation", dst)
			}
			opts = append(opts, "rro")
		} else if m.Readonly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		uids, gids, err := mountIDMappings(in, m)
		if err != nil {
			return nil, "", err
		}
		user[dst] = true
		userMounts = append(userMounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts,
			UIDMappings: uids, GIDMappings: gids})
	}
	// A container mount replaces a default one at the same place (for
	// example a volume on /etc/hosts or /dev/shm).
	out := mounts[:0]
	for _, m := range mounts {
		if !user[m.Destination] {
			out = append(out, m)
		}
	}
	out = append(out, userMounts...)
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i].Destination) < depth(out[j].Destination) })
	return out, rootProp, nil
}

// imageVolume is the bind mount of an image volume (CRI Mount.image) from
// the source the caller mounted and resolved for it (Input.ImageVolumes),
// and the rootfs propagation it needs. It is read-only whatever Readonly
// says: every container that mounts the image (or, idmapped, every
// container of the pod) shares one mount of it.
func imageVolume(in Input, m *runtimeapi.Mount, dst string) (specs.Mount, string, error) {
	img := m.GetImage().GetImage()
	if m.HostPath != "" {
		return specs.Mount{}, "", errdefs.InvalidArgument("mount %s names both host path %s and image %s", dst, m.HostPath, img)
	}
	src, ok := in.ImageVolumes[dst]
	if !ok {
		return specs.Mount{}, "", errdefs.Unimplemented("image volume mounts (%s of image %s) are not supported", dst, img)
	}
	// nodev although layers hold no devices: the bind of a single-layer
	// image shows the layer's overlay whiteouts (character devices 0:0).
	opts := []string{"rbind"}
	prop := ""
	switch m.Propagation {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		opts = append(opts, "rprivate")
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		// Given as asked. Unlike a host path, the source is Skiff's own
		// mount, so there is no host mount to check: nothing is mounted
		// below an image's mount for the container to receive.
		opts = append(opts, "rslave")
		prop = "rslave"
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		return specs.Mount{}, "", errdefs.InvalidArgument("image volume %s of image %s: bidirectional propagation needs a writable mount, and an image volume is read-only", dst, img)
	default:
		return specs.Mount{}, "", errdefs.InvalidArgument("image volume %s: unknown propagation %v", dst, m.Propagation)
	}
	if m.RecursiveReadOnly {
		if !m.Readonly {
			return specs.Mount{}, "", errdefs.InvalidArgument("mount %s: recursive read-only needs readonly", dst)
		}
		if m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
			return specs.Mount{}, "", errdefs.InvalidArgument("mount %s: recursive read-only needs private propagation", dst)
		}
		opts = append(opts, "rro")
	} else {
		opts = append(opts, "ro")
	}
	opts = append(opts, "nodev")
	// Checked either way: the pod's mappings are the only ones supported.
	uids, gids, err := mountIDMappings(in, m)
	if err != nil {
		return specs.Mount{}, "", err
	}
	if src.IDMapped {
		uids, gids = nil, nil
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src.Source, Options: opts, UIDMappings: uids, GIDMappings: gids}, prop, nil
}

// mountIDMappings are the ID mappings of an idmapped mount: the kubelet
// sets its pod's on every mount of a pod with a user namespace, so that
// volumes show their files owned as on the host. The executor idmaps with
// the pod's user namespace, so other mappings are refused.
func mountIDMappings(in Input, m *runtimeapi.Mount) (uids, gids []specs.LinuxIDMapping, _ error) {
	if len(m.GetUidMappings())+len(m.GetGidMappings()) == 0 {
		return nil, nil, nil
	}
	pod := podUserNS(in.Pod)
	if pod == nil {
		return nil, nil, errdefs.InvalidArgument("mount %s: ID mappings in a pod without a user namespace", m.ContainerPath)
	}
	if !sameIDs(m.GetUidMappings(), pod.GetUids()) || !sameIDs(m.GetGidMappings(), pod.GetGids()) {
		return nil, nil, errdefs.InvalidArgument("mount %s: ID mappings differ from the pod's user namespace; only the pod's are supported", m.ContainerPath)
	}
	return IDMappings(m.GetUidMappings()), IDMappings(m.GetGidMappings()), nil
}

func depth(p string) int {
	p = filepath.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// hostPath resolves symlinks of a volume's host path and, like other
// runtimes, creates a missing path as a directory.
func hostPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", errdefs.InvalidArgument("mount host path %q is not absolute", p)
	}
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("create mount host path %s: %w", p, err)
		}
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("resolve mount host path %s: %w", p, err)
	}
	return r, nil
}
