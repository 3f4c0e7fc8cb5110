package cri

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"

	"github.com/skiffcri/skiff/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Status reports RuntimeReady and NetworkReady; NetworkReady is false with the
// CNI manager's reason while no usable network config is loaded.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	netCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.network == nil {
		netCond.Status = false
		netCond.Reason = "NetworkPluginNotReady"
		netCond.Message = "no CNI network manager configured"
	} else if err := s.network.Ready(); err != nil {
		netCond.Status = false
		netCond.Reason = "NetworkPluginNotReady"
		netCond.Message = err.Error()
	}
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeCond, netCond}},
		RuntimeHandlers: s.runtimeHandlers(),
		Features:        &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		info, _ := json.Marshal(map[string]any{"runtime": RuntimeName, "version": Version, "cgroupDriver": s.cgroupDriver})
		resp.Info = map[string]string{"config": string(info)}
	}
	return resp, nil
}

// RuntimeConfig tells the kubelet which cgroup driver to use.
func (s *Server) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.cgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig accepts the pod CIDR the kubelet sends; CNI plugins own
// addressing; the CIDRs are passed to them as the ipRanges capability.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		var cidrs []string
		for _, c := range strings.Split(cidr, ",") {
			c = strings.TrimSpace(c)
			if _, err := netip.ParsePrefix(c); err != nil {
				return nil, errdefs.InvalidArgument("pod CIDR %q: %v", c, err)
			}
			cidrs = append(cidrs, c)
		}
		s.podCIDRs.Store(&cidrs)
		s.log.Info("pod CIDR from kubelet", "cidr", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// runtimeHandlers lists the default handler ("") and the configured ones,
// each with its own features: the built-in executor's probed at start-up,
// or those of the OCI runtime the handler names.
func (s *Server) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	features := func(f Features) *runtimeapi.RuntimeHandlerFeatures {
		return &runtimeapi.RuntimeHandlerFeatures{
			RecursiveReadOnlyMounts: f.RecursiveReadOnlyMounts,
			UserNamespaces:          f.UserNamespaces,
		}
	}
	out := []*runtimeapi.RuntimeHandler{{Name: "", Features: features(s.features)}}
	for _, h := range s.handlers {
		out = append(out, &runtimeapi.RuntimeHandler{Name: h.Name, Features: features(h.Features)})
	}
	return out
}
