package main

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/sandbox"
)

// podOS adapts the sandbox package, which decides a pod's kernel
// resources, to the CRI layer's types.
type podOS struct {
	// nsHolder is the skiff-shim binary, which package sandbox runs as
	// the holder process of a pod's new user namespace.
	nsHolder string
}

func (p podOS) Create(ctx context.Context, dir string, cfg *runtimeapi.PodSandboxConfig) (spec.Namespaces, spec.PodFiles, error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	userNS, err := podUserNS(nsOpts)
	if err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, err
	}
	pc := sandbox.PodConfig{
		HostNetwork: nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		HostIPC:     nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE,
		Hostname:    cfg.GetHostname(),
		Sysctls:     cfg.GetLinux().GetSysctls(),
		UserNS:      userNS,
		NSHolder:    p.nsHolder,
	}
	if d := cfg.GetDnsConfig(); d != nil {
		pc.DNS = &sandbox.DNSConfig{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	pod, err := sandbox.CreatePod(ctx, dir, pc)
	if err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, err
	}
	ns, f := pod.Namespaces, pod.Files
	return spec.Namespaces{Net: ns.Net, IPC: ns.IPC, UTS: ns.UTS, PID: ns.PID, User: ns.User},
		spec.PodFiles{Hostname: f.Hostname, Hosts: f.Hosts, ResolvConf: f.ResolvConf, Shm: f.Shm}, nil
}

// podUserNS reads the pod's user namespace from the CRI's options: mode POD
// is a user namespace of the pod's own, with the kubelet's mappings (which
// package sandbox checks); NODE, or no options (a kubelet without user
// namespace support), the node's. CONTAINER and TARGET make no sense for a
// pod. A pod user namespace with the node's PID namespace is refused here,
// since package sandbox knows nothing of PID namespace modes; its own rule
// covers the network and IPC modes.
func podUserNS(opts *runtimeapi.NamespaceOption) (*sandbox.UserNS, error) {
	u := opts.GetUsernsOptions()
	if u == nil {
		return nil, nil
	}
	switch mode := u.GetMode(); mode {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, errdefs.InvalidArgument("user namespace mode %s is not supported for a pod: use POD or NODE", mode)
	}
	if opts.GetPid() == runtimeapi.NamespaceMode_NODE {
		return nil, errdefs.InvalidArgument("a pod sharing the node's PID namespace (hostPID) cannot have its own user namespace (hostUsers: false)")
	}
	return &sandbox.UserNS{UIDs: idMaps(u.GetUids()), GIDs: idMaps(u.GetGids())}, nil
}

func idMaps(in []*runtimeapi.IDMapping) []sandbox.IDMap {
	out := make([]sandbox.IDMap, 0, len(in))
	for _, m := range in {
		out = append(out, sandbox.IDMap{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}

func (podOS) PinPID(dir string, pid int) (string, error) { return sandbox.PinPodPID(dir, pid) }

func (podOS) SetHosts(dir string, hostNetwork bool, ips []string, hostname string) error {
	return sandbox.SetPodHosts(dir, hostNetwork, ips, hostname)
}

func (podOS) Remove(ctx context.Context, dir string) error { return sandbox.RemovePod(ctx, dir) }

// podNetStats reads pods' interface counters from inside their network
// namespaces.
type podNetStats struct{}

func (podNetStats) InterfaceStats(ctx context.Context, netnsPath string) ([]cri.InterfaceStats, error) {
	stats, err := sandbox.ReadInterfaceStats(ctx, netnsPath)
	if err != nil {
		return nil, err
	}
	out := make([]cri.InterfaceStats, 0, len(stats))
	for _, s := range stats {
		out = append(out, cri.InterfaceStats{
			Name:    s.Name,
			RxBytes: s.RxBytes, RxPackets: s.RxPackets, RxErrors: s.RxErrors, RxDropped: s.RxDropped,
			TxBytes: s.TxBytes, TxPackets: s.TxPackets, TxErrors: s.TxErrors, TxDropped: s.TxDropped,
		})
	}
	return out, nil
}
