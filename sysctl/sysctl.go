// Package sysctl holds the one rule for which sysctls a pod or container may
// set: those that belong to a namespace of its own (network, IPC, UTS), as
// the kubelet classifies them. Names are checked component by component, so
// that no name can reach outside its namespace's /proc/sys tree.
package sysctl

import (
	"path"
	"strings"

	"github.com/skiffcri/skiff/errdefs"
)

// Namespace is the kind of namespace a sysctl belongs to.
type Namespace int

// Namespaces a sysctl can belong to.
const (
	Net Namespace = iota + 1
	IPC
	UTS
)

func (n Namespace) String() string {
	switch n {
	case Net:
		return "network"
	case IPC:
		return "IPC"
	case UTS:
		return "UTS"
	}
	return "none"
}

// Normalize returns name in dotted form. Kubernetes accepts names with '/'
// as the separator too ("net/ipv4/conf/eth0.100/rp_filter"); in that form
// dots belong to a component and become slashes in the dotted form
// ("net.ipv4.conf.eth0/100.rp_filter").
func Normalize(name string) string {
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

// Path is the file of sysctl name under /proc/sys, e.g. "net/ipv4/ip_forward".
// name must have passed Classify.
func Path(name string) string {
	return swapDotsSlashes(Normalize(name))
}

// Classify returns the namespace sysctl name belongs to. A malformed name
// (an empty, "." or ".." component) or one that is not namespaced (setting
// it would change the host) is an ErrInvalidArgument error.
func Classify(name string) (Namespace, error) {
	name = Normalize(name)
	p := swapDotsSlashes(name)
	for _, comp := range strings.Split(p, "/") {
		if comp == "" || comp == "." || comp == ".." {
			return 0, errdefs.InvalidArgument("sysctl %q: malformed name", name)
		}
	}
	if path.Clean(p) != p {
		return 0, errdefs.InvalidArgument("sysctl %q: malformed name", name)
	}
	switch {
	case strings.HasPrefix(name, "net."):
		return Net, nil
	case strings.HasPrefix(name, "fs.mqueue."),
		strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"),
		name == "kernel.sem", name == "kernel.sem_next_id":
		return IPC, nil
	case name == "kernel.domainname":
		// kernel.hostname is namespaced too, but the hostname is the pod
		// config's (the OCI spec's hostname field) to set.
		return UTS, nil
	}
	return 0, errdefs.InvalidArgument("sysctl %q is not namespaced: setting it would change the host", name)
}
