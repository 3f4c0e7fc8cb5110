package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/meta"
)

// podIfName is the pod's interface as the CNI plugins name it (CNI_IFNAME),
// reported as the default interface.
const podIfName = "eth0"

// InterfaceStats are one network interface's counters as the kernel keeps
// them.
type InterfaceStats struct {
	Name                                 string
	RxBytes, RxErrors, TxBytes, TxErrors uint64
	RxPackets, RxDropped                 uint64
	TxPackets, TxDropped                 uint64
}

// PodNetStats reads interface counters inside pods' network namespaces.
type PodNetStats interface {
	// InterfaceStats lists the interfaces of the network namespace pinned
	// at netnsPath, loopback excluded.
	InterfaceStats(ctx context.Context, netnsPath string) ([]InterfaceStats, error)
}

// podNetworkUsage reads the interfaces of a ready pod's own network
// namespace in the CRI's form (podInterfaces).
func (s *Server) podNetworkUsage(ctx context.Context, pod *meta.Pod) (*runtimeapi.NetworkUsage, error) {
	ifaces, err := s.podInterfaces(ctx, pod)
	if err != nil || len(ifaces) == 0 {
		// No interface but lo (a pod whose CNI DEL ran while it was still
		// ready) reports no network: the kubelet reads the default
		// interface of any network it is given, and a nil one crashes it.
		return nil, err
	}
	return networkUsage(ifaces), nil
}

// podInterfaces reads the interfaces of a ready pod's own network
// namespace. Host-network pods report none (nil), as with containerd:
// their traffic is the node's, which the kubelet reads itself. A pod that
// is not ready has had its interfaces removed by CNI DEL.
func (s *Server) podInterfaces(ctx context.Context, pod *meta.Pod) ([]InterfaceStats, error) {
	netns := pod.Namespaces.Net
	if s.netStats == nil || pod.State != podReady || netns == "" {
		return nil, nil
	}
	ifaces, err := s.netStats.InterfaceStats(ctx, netns)
	if err != nil {
		return nil, fmt.Errorf("network stats of pod %s: %w", pod.ID, err)
	}
	if ifaces == nil {
		ifaces = []InterfaceStats{}
	}
	return ifaces, nil
}

// networkUsage is interface counters in the CRI's form; ifaces must not be
// empty, so that the default interface is set.
func networkUsage(ifaces []InterfaceStats) *runtimeapi.NetworkUsage {
	out := &runtimeapi.NetworkUsage{Timestamp: time.Now().UnixNano()}
	for _, i := range ifaces {
		u := &runtimeapi.NetworkInterfaceUsage{
			Name:     i.Name,
			RxBytes:  &runtimeapi.UInt64Value{Value: i.RxBytes},
			RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
			TxBytes:  &runtimeapi.UInt64Value{Value: i.TxBytes},
			TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors},
		}
		out.Interfaces = append(out.Interfaces, u)
		if i.Name == podIfName {
			out.DefaultInterface = u
		}
	}
	// A plugin that names the interface otherwise: its first one.
	if out.DefaultInterface == nil && len(out.Interfaces) > 0 {
		out.DefaultInterface = out.Interfaces[0]
	}
	return out
}
