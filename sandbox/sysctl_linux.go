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
	"github.com/skiffcri/skiff/sysctl"
)

// SysctlNamespace returns the pod namespace a sysctl belongs to, or an
// ErrInvalidArgument error for a sysctl that is malformed or not namespaced
// (it would change the host). The rule is package sysctl's.
func SysctlNamespace(name string) (NamespaceSet, error) {
	kind, err := sysctl.Classify(name)
	if err != nil {
		return 0, err
	}
	switch kind {
	case sysctl.Net:
		return NetNS, nil
	case sysctl.IPC:
		return IPCNS, nil
	case sysctl.UTS:
		return UTSNS, nil
	}
	return 0, errdefs.InvalidArgument("sysctl %q: unknown namespace %v", name, kind)
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
		writes = append(writes, [2]string{filepath.Join("/proc/sys", sysctl.Path(name)), val})
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
