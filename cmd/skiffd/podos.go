package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/sandbox"
)

// podOS builds a pod's kernel resources from the sandbox package, in the
// order the CRI layer relies on: namespaces, files, shm, sysctls.
type podOS struct{}

func (podOS) Create(ctx context.Context, dir string, cfg *runtimeapi.PodSandboxConfig) (_ spec.Namespaces, _ spec.PodFiles, retErr error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE
	var kinds sandbox.NamespaceSet
	if !hostNet {
		kinds |= sandbox.NetNS | sandbox.UTSNS
	}
	if !hostIPC {
		kinds |= sandbox.IPCNS
	}
	hostname := cfg.GetHostname()
	if hostNet || hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("node hostname: %w", err)
		}
		if hostname == "" || hostNet {
			hostname = h
		}
	}
	defer func() {
		if retErr != nil {
			_ = (podOS{}).Remove(context.Background(), dir)
		}
	}()
	ns, err := sandbox.CreateNamespaces(ctx, filepath.Join(dir, "ns"), kinds, hostname)
	if err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("pod namespaces: %w", err)
	}
	if err := sandbox.WriteHostname(dir, hostname); err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("pod hostname: %w", err)
	}
	if err := sandbox.WriteHosts(dir, hostNet, nil); err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("pod hosts file: %w", err)
	}
	var dns *sandbox.DNSConfig
	if d := cfg.GetDnsConfig(); d != nil {
		dns = &sandbox.DNSConfig{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	if err := sandbox.WriteResolvConf(dir, dns); err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("pod resolv.conf: %w", err)
	}
	files := spec.PodFiles{
		Hostname:   filepath.Join(dir, sandbox.HostnameFile),
		Hosts:      filepath.Join(dir, sandbox.HostsFile),
		ResolvConf: filepath.Join(dir, sandbox.ResolvConfFile),
		Shm:        "/dev/shm",
	}
	if !hostIPC {
		files.Shm = filepath.Join(dir, "shm")
		if err := sandbox.MountShm(ctx, files.Shm, 0); err != nil {
			return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("pod shm: %w", err)
		}
	}
	if err := sandbox.ApplySysctls(ns, cfg.GetLinux().GetSysctls()); err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, fmt.Errorf("pod sysctls: %w", err)
	}
	return spec.Namespaces{Net: ns.Net, IPC: ns.IPC, UTS: ns.UTS, PID: ns.PID}, files, nil
}

func (podOS) PinPID(dir string, pid int) (string, error) {
	return sandbox.PinPIDNamespace(filepath.Join(dir, "ns"), pid)
}

func (podOS) SetHosts(dir string, hostNetwork bool, ips []string, hostname string) error {
	var extra []sandbox.HostEntry
	for _, ip := range ips {
		if hostname == "" {
			break
		}
		extra = append(extra, sandbox.HostEntry{IP: ip, Names: []string{hostname}})
	}
	return sandbox.WriteHosts(dir, hostNetwork, extra)
}

func (podOS) Remove(ctx context.Context, dir string) error {
	return errors.Join(
		sandbox.UnmountShm(filepath.Join(dir, "shm")),
		sandbox.RemoveNamespaces(filepath.Join(dir, "ns")),
	)
}

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
