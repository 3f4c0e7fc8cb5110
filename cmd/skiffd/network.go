package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/skiffcri/skiff/cni"
	"github.com/skiffcri/skiff/cri"
)

// cniNetwork adapts the CNI manager to what the CRI layer asks of a pod network.
type cniNetwork struct{ m *cni.Manager }

func (n cniNetwork) Ready() error { return n.m.Ready() }

func (n cniNetwork) request(r cri.PodNetworkRequest) cni.SetupRequest {
	req := cni.SetupRequest{
		PodID: r.PodID, NetNS: r.NetNS,
		PodName: r.Name, PodNamespace: r.Namespace, PodUID: r.UID,
		Annotations: r.Annotations, PodCIDRs: r.PodCIDRs,
	}
	for _, pm := range r.PortMappings {
		req.PortMappings = append(req.PortMappings, cni.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(),
			Protocol: strings.ToLower(pm.GetProtocol().String()), HostIP: pm.GetHostIp(),
		})
	}
	if d := r.DNS; d != nil {
		req.DNS = &cni.DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	return req
}

func (n cniNetwork) Setup(ctx context.Context, r cri.PodNetworkRequest) ([]string, error) {
	res, err := n.m.Setup(ctx, n.request(r))
	if err != nil {
		return nil, err
	}
	ips := make([]string, 0, len(res.PodIPs))
	for _, ip := range res.PodIPs {
		ips = append(ips, ip.String())
	}
	return ips, nil
}

func (n cniNetwork) Teardown(ctx context.Context, r cri.PodNetworkRequest) error {
	return n.m.Teardown(ctx, n.request(r))
}

func (n cniNetwork) GC(ctx context.Context, podIDs []string) error { return n.m.GC(ctx, podIDs) }

func (n cniNetwork) Result(ctx context.Context, podID string) (json.RawMessage, error) {
	res, err := n.m.CachedResult(podID, "")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode cni result of pod %s: %w", podID, err)
	}
	return b, nil
}
