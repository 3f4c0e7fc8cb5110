package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// ipcSysctls are the kernel.* sysctls that belong to the IPC namespace (as
// runc and the kubelet classify them); fs.mqueue.* is IPC too.
var ipcSysctls = map[string]bool{
	"kernel.msgmax":          true,
	"kernel.msgmnb":          true,
	"kernel.msgmni":          true,
	"kernel.sem":             true,
	"kernel.shmall":          true,
	"kernel.shmmax":          true,
	"kernel.shmmni":          true,
	"kernel.shm_rmid_forced": true,
}

// NormalizeSysctl returns name in dotted form. Kubernetes accepts names with
// '/' as the separator too ("net/ipv4/conf/eth0.100/rp_filter"); in that form
// dots are part of a component and become slashes in the dotted form.
func NormalizeSysctl(name string) string {
	i := strings.IndexAny(name, "./")
	if i < 0 || name[i] == '.' {
		return name
	}
	return swapDotsSlashes(name)
}

func swapDotsSlashes(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}

// SysctlNamespace returns the namespace kind a sysctl belongs to, or an
// ErrInvalidArgument error for a sysctl that is not namespaced (it would
// change the host).
func SysctlNamespace(name string) (NamespaceSet, error) {
	name = NormalizeSysctl(name)
	for _, comp := range strings.Split(swapDotsSlashes(name), "/") {
		if comp == "" || comp == "." || comp == ".." {
			return 0, errdefs.InvalidArgument("sysctl %q: malformed name", name)
		}
	}
	switch {
	case strings.HasPrefix(name, "net."):
		return NetNS, nil
	case ipcSysctls[name], strings.HasPrefix(name, "fs.mqueue."):
		return IPCNS, nil
	case name == "kernel.domainname":
		return UTSNS, nil
	}
	return 0, errdefs.InvalidArgument("sysctl %q is not namespaced and cannot be set for a pod", name)
}

// ApplySysctls writes namespaced sysctls into the pod's namespaces: net.*
// into its network namespace, IPC sysctls into its IPC namespace,
// kernel.domainname into its UTS namespace. Every name is checked before any
// is written; a sysctl of a kind the pod shares with the host (host network,
// host IPC) is refused with ErrInvalidArgument, as is one that is not
// namespaced at all.
func ApplySysctls(ns Namespaces, sysctls map[string]string) error {
	if len(sysctls) == 0 {
		return nil
	}
	names := make([]string, 0, len(sysctls))
	for name := range sysctls {
		names = append(names, name)
	}
	slices.Sort(names)
	var (
		join   Namespaces
		writes [][2]string
	)
	for _, name := range names {
		kind, err := SysctlNamespace(name)
		if err != nil {
			return err
		}
		src := *ns.ptr(kind)
		if src == "" {
			return errdefs.InvalidArgument("sysctl %q: pod shares the host's %s namespace", name, kind)
		}
		*join.ptr(kind) = src
		val := sysctls[name]
		if strings.ContainsAny(val, "\n") {
			return errdefs.InvalidArgument("sysctl %q: value contains a newline", name)
		}
		writes = append(writes, [2]string{sysctlPath(NormalizeSysctl(name)), val})
	}
	return join.Do(func() error {
		for _, w := range writes {
			if err := writeSysctl(w[0], w[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// sysctlPath maps a dotted name to its /proc/sys file.
func sysctlPath(dotted string) string {
	return filepath.Join("/proc/sys", swapDotsSlashes(dotted))
}

// writeSysctl must run on a thread inside the target namespaces: /proc/sys
// resolves net and ipc entries against the opening thread's namespaces.
func writeSysctl(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if errors.Is(err, unix.ENOENT) {
		return errdefs.InvalidArgument("sysctl %s: no such sysctl in the pod's namespace", path)
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, unix.EINVAL) {
		return errdefs.InvalidArgument("sysctl %s=%q: %v", path, val, err)
	}
	if err != nil {
		return fmt.Errorf("write sysctl: %w", err)
	}
	return nil
}
