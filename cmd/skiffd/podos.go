package main

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/sandbox"
)

// podOS adapts the sandbox package, which decides a pod's kernel
// resources, to the CRI layer's types.
type podOS struct{}

func (podOS) Create(ctx context.Context, dir string, cfg *runtimeapi.PodSandboxConfig) (spec.Namespaces, spec.PodFiles, error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	pc := sandbox.PodConfig{
		HostNetwork: nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE,
		HostIPC:     nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE,
		Hostname:    cfg.GetHostname(),
		Sysctls:     cfg.GetLinux().GetSysctls(),
	}
	if d := cfg.GetDnsConfig(); d != nil {
		pc.DNS = &sandbox.DNSConfig{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	pod, err := sandbox.CreatePod(ctx, dir, pc)
	if err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, err
	}
	ns, f := pod.Namespaces, pod.Files
	return spec.Namespaces{Net: ns.Net, IPC: ns.IPC, UTS: ns.UTS, PID: ns.PID},
		spec.PodFiles{Hostname: f.Hostname, Hosts: f.Hosts, ResolvConf: f.ResolvConf, Shm: f.Shm}, nil
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
		out = append(out, cri.InterfaceStats{Name: s.Name, RxBytes: s.RxBytes, RxErrors: s.RxErrors, TxBytes: s.TxBytes, TxErrors: s.TxErrors})
	}
	return out, nil
}
