package cni

import (
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/skiffcri/skiff/errdefs"
)

// SetupRequest describes one pod's attachment. Setup, Teardown and Check take
// the same request; Teardown and Check only need PodID, NetNS and IfName,
// the rest is taken from what Setup recorded.
type SetupRequest struct {
	// PodID is the sandbox ID, passed to plugins as CNI_CONTAINERID.
	PodID string
	// NetNS is the path of the pod's network namespace (a bind mount).
	NetNS string
	// IfName is the interface to create in the pod; DefaultIfName if empty.
	IfName string

	PodName      string
	PodNamespace string
	PodUID       string

	// PortMappings become the portMappings capability (portmap plugin).
	// Mappings without a host port are skipped, as kubelet expects.
	PortMappings []PortMapping
	// Annotations are the pod's annotations; kubernetes.io/ingress-bandwidth
	// and kubernetes.io/egress-bandwidth become the bandwidth capability.
	Annotations map[string]string
	// PodCIDRs become the ipRanges capability, one range set per CIDR
	// (dual-stack), for IPAM plugins that honour it.
	PodCIDRs []string
	// DNS becomes the dns capability.
	DNS *DNS
}

// PortMapping is one hostPort mapping of the pod.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string // TCP, UDP or SCTP in any case; TCP if empty
	HostIP        string
}

// DNS is the pod's DNS configuration.
type DNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// Bandwidth annotation keys, as the kubelet's network plugins read them.
const (
	AnnotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	AnnotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// Bandwidth limits a pod's traffic, in bits per second; 0 means unlimited.
type Bandwidth struct {
	IngressRate uint64
	EgressRate  uint64
}

// Bounds the kubelet enforces on the bandwidth annotations.
const (
	minBandwidth = 1000                  // 1k
	maxBandwidth = 1_000_000_000_000_000 // 1P
)

// BandwidthFromAnnotations parses the pod bandwidth annotations (Kubernetes
// quantities such as "10M" or "1Gi", in bits per second). It returns nil when
// neither is set.
func BandwidthFromAnnotations(ann map[string]string) (*Bandwidth, error) {
	var bw Bandwidth
	for key, dst := range map[string]*uint64{
		AnnotationIngressBandwidth: &bw.IngressRate,
		AnnotationEgressBandwidth:  &bw.EgressRate,
	} {
		s, ok := ann[key]
		if !ok {
			continue
		}
		v, err := parseQuantity(s)
		if err != nil {
			return nil, errdefs.InvalidArgument("annotation %s=%q: %v", key, s, err)
		}
		if v < minBandwidth || v > maxBandwidth {
			return nil, errdefs.InvalidArgument("annotation %s=%q: must be between 1k and 1P", key, s)
		}
		*dst = v
	}
	if bw == (Bandwidth{}) {
		return nil, nil
	}
	return &bw, nil
}

// quantitySuffixes are the Kubernetes resource.Quantity suffixes that make
// sense for a rate.
var quantitySuffixes = []struct {
	suffix string
	mult   *big.Int
}{
	{"Ki", big.NewInt(1 << 10)}, {"Mi", big.NewInt(1 << 20)}, {"Gi", big.NewInt(1 << 30)},
	{"Ti", big.NewInt(1 << 40)}, {"Pi", big.NewInt(1 << 50)}, {"Ei", big.NewInt(1 << 60)},
	{"k", big.NewInt(1e3)}, {"M", big.NewInt(1e6)}, {"G", big.NewInt(1e9)},
	{"T", big.NewInt(1e12)}, {"P", big.NewInt(1e15)}, {"E", big.NewInt(1e18)},
}

// parseQuantity parses a non-negative Kubernetes quantity ("1.5M", "100Ki",
// "2e6") to an integer, rounding up like resource.Quantity.Value does.
func parseQuantity(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty quantity")
	}
	num, mult := s, big.NewInt(1)
	for _, q := range quantitySuffixes {
		if strings.HasSuffix(s, q.suffix) {
			num, mult = strings.TrimSuffix(s, q.suffix), q.mult
			break
		}
	}
	if num == "" || strings.HasPrefix(num, "-") || strings.HasPrefix(num, "+") {
		return 0, fmt.Errorf("invalid quantity")
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid quantity")
	}
	r.Mul(r, new(big.Rat).SetInt(mult))
	// Ceiling of a non-negative rational.
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsUint64() {
		return 0, fmt.Errorf("quantity too large")
	}
	return q.Uint64(), nil
}

// cniArgs are the CNI_ARGS every Kubernetes runtime passes; IgnoreUnknown
// keeps plugins that do not know the K8S_* keys from failing.
func cniArgs(req SetupRequest) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", req.PodNamespace},
		{"K8S_POD_NAME", req.PodName},
		{"K8S_POD_INFRA_CONTAINER_ID", req.PodID},
		{"K8S_POD_UID", req.PodUID},
	}
}

// capabilityArgs builds the runtimeConfig capabilities. libcni hands each
// plugin only the keys it declares in "capabilities". Values are plain JSON
// types so that they survive the round trip through the on-disk record.
func capabilityArgs(req SetupRequest) (map[string]any, error) {
	caps := map[string]any{}
	var pms []any
	for _, pm := range req.PortMappings {
		if pm.HostPort <= 0 {
			continue
		}
		if pm.HostPort > math.MaxUint16 || pm.ContainerPort <= 0 || pm.ContainerPort > math.MaxUint16 {
			return nil, errdefs.InvalidArgument("port mapping %d->%d: port out of range", pm.HostPort, pm.ContainerPort)
		}
		proto := strings.ToLower(pm.Protocol)
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp", "sctp":
		default:
			return nil, errdefs.InvalidArgument("port mapping %d->%d: unknown protocol %q", pm.HostPort, pm.ContainerPort, pm.Protocol)
		}
		m := map[string]any{
			"hostPort":      float64(pm.HostPort),
			"containerPort": float64(pm.ContainerPort),
			"protocol":      proto,
		}
		if pm.HostIP != "" {
			m["hostIP"] = pm.HostIP
		}
		pms = append(pms, m)
	}
	if len(pms) > 0 {
		caps["portMappings"] = pms
	}

	bw, err := BandwidthFromAnnotations(req.Annotations)
	if err != nil {
		return nil, err
	}
	if bw != nil {
		// The kubelet never exposed a burst; like it, allow a burst large
		// enough not to throttle below the rate.
		m := map[string]any{}
		if bw.IngressRate > 0 {
			m["ingressRate"] = float64(bw.IngressRate)
			m["ingressBurst"] = float64(math.MaxInt32)
		}
		if bw.EgressRate > 0 {
			m["egressRate"] = float64(bw.EgressRate)
			m["egressBurst"] = float64(math.MaxInt32)
		}
		caps["bandwidth"] = m
	}

	if len(req.PodCIDRs) > 0 {
		var sets []any
		for _, cidr := range req.PodCIDRs {
			sets = append(sets, []any{map[string]any{"subnet": cidr}})
		}
		caps["ipRanges"] = sets
	}

	if req.DNS != nil && (len(req.DNS.Servers) > 0 || len(req.DNS.Searches) > 0 || len(req.DNS.Options) > 0) {
		caps["dns"] = map[string]any{
			"servers":  toAny(req.DNS.Servers),
			"searches": toAny(req.DNS.Searches),
			"options":  toAny(req.DNS.Options),
		}
	}
	return caps, nil
}

func toAny(ss []string) []any {
	out := make([]any, 0, len(ss))
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}
