package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PodConfig is what a pod's kernel resources are made from: the parts of
// the CRI's pod config that concern the node's kernel.
type PodConfig struct {
	// HostNetwork and HostIPC share the node's namespaces of that kind; a
	// pod on the host network also keeps the node's UTS namespace.
	HostNetwork, HostIPC bool
	// Hostname is the pod's; "" means the node's.
	Hostname string
	// DNS, when set, replaces the node's resolv.conf.
	DNS *DNSConfig
	// Sysctls are namespaced sysctls for the pod's namespaces.
	Sysctls map[string]string
	// UserNS, when set, gives the pod its own user namespace with these
	// mappings, owning its other namespaces; nil keeps the node's.
	UserNS *UserNS
	// NSHolder is the skiff-shim binary, run as the holder process of a
	// new user namespace (see CreateUserNamespaces). Needed with UserNS.
	NSHolder string
}

// Files are the paths of the files every container of a pod bind-mounts.
type Files struct {
	Hostname, Hosts, ResolvConf string
	// Shm is the pod's /dev/shm, the node's for a host-IPC pod.
	Shm string
}

// Pod is what CreatePod made under the pod's directory.
type Pod struct {
	Namespaces Namespaces
	Files      Files
}

// Pod directory layout, below the directory CreatePod is given.
const (
	nsDir  = "ns"
	shmDir = "shm"
)

// PodNamespaces is the set of namespaces a pod gets of its own: network and
// UTS unless it is on the host network, IPC unless it shares the host's.
// The PID namespace is made by the pod init, not here.
func PodNamespaces(cfg PodConfig) NamespaceSet {
	var kinds NamespaceSet
	if !cfg.HostNetwork {
		kinds |= NetNS | UTSNS
	}
	if !cfg.HostIPC {
		kinds |= IPCNS
	}
	return kinds
}

// PodHostname is the hostname a pod's containers see: the node's (node) on
// the host network or when the pod names none, else the pod's.
func PodHostname(cfg PodConfig, node string) string {
	if cfg.HostNetwork || cfg.Hostname == "" {
		return node
	}
	return cfg.Hostname
}

// CreatePod makes a pod's namespaces, its hostname, hosts and resolv.conf
// files, its /dev/shm and its sysctls under dir, in that order. With
// cfg.UserNS the namespaces are owned by a new user namespace, whose root
// also owns the /dev/shm; a user namespace with the node's network or IPC
// namespace is refused with ErrInvalidArgument. On failure nothing is left.
func CreatePod(ctx context.Context, dir string, cfg PodConfig) (_ Pod, retErr error) {
	if err := checkPodUserNS(cfg); err != nil {
		return Pod{}, err
	}
	node, err := os.Hostname()
	if err != nil {
		return Pod{}, fmt.Errorf("node hostname: %w", err)
	}
	hostname := PodHostname(cfg, node)
	defer func() {
		if retErr != nil {
			_ = RemovePod(context.Background(), dir)
		}
	}()
	var ns Namespaces
	if cfg.UserNS == nil {
		ns, err = CreateNamespaces(ctx, filepath.Join(dir, nsDir), PodNamespaces(cfg), hostname)
	} else {
		ns, err = CreateUserNamespaces(ctx, filepath.Join(dir, nsDir), PodNamespaces(cfg), hostname, *cfg.UserNS, cfg.NSHolder)
	}
	if err != nil {
		return Pod{}, fmt.Errorf("pod namespaces: %w", err)
	}
	if err := WriteHostname(dir, hostname); err != nil {
		return Pod{}, fmt.Errorf("pod hostname: %w", err)
	}
	if err := WriteHosts(dir, cfg.HostNetwork, nil); err != nil {
		return Pod{}, fmt.Errorf("pod hosts file: %w", err)
	}
	if err := WriteResolvConf(dir, cfg.DNS); err != nil {
		return Pod{}, fmt.Errorf("pod resolv.conf: %w", err)
	}
	files := Files{
		Hostname:   filepath.Join(dir, HostnameFile),
		Hosts:      filepath.Join(dir, HostsFile),
		ResolvConf: filepath.Join(dir, ResolvConfFile),
		Shm:        "/dev/shm",
	}
	if !cfg.HostIPC {
		files.Shm = filepath.Join(dir, shmDir)
		var uid, gid uint32
		if cfg.UserNS != nil {
			uid, gid = cfg.UserNS.hostRoot()
		}
		if err := MountShm(ctx, files.Shm, 0, uid, gid); err != nil {
			return Pod{}, fmt.Errorf("pod shm: %w", err)
		}
	}
	if err := ApplySysctls(ns, cfg.Sysctls); err != nil {
		return Pod{}, fmt.Errorf("pod sysctls: %w", err)
	}
	return Pod{Namespaces: ns, Files: files}, nil
}

// PinPodPID pins the PID namespace of the pod's init (pid) in the pod's
// directory dir.
func PinPodPID(dir string, pid int) (string, error) {
	return PinPIDNamespace(filepath.Join(dir, nsDir), pid)
}

// SetPodHosts rewrites the pod's hosts file once its IPs are known: each IP
// with the pod's hostname.
func SetPodHosts(dir string, hostNetwork bool, ips []string, hostname string) error {
	var extra []HostEntry
	if hostname != "" {
		for _, ip := range ips {
			extra = append(extra, HostEntry{IP: ip, Names: []string{hostname}})
		}
	}
	return WriteHosts(dir, hostNetwork, extra)
}

// RemovePod undoes CreatePod and PinPodPID; it is idempotent.
func RemovePod(ctx context.Context, dir string) error {
	return errors.Join(
		UnmountShm(filepath.Join(dir, shmDir)),
		RemoveNamespaces(filepath.Join(dir, nsDir)),
	)
}
