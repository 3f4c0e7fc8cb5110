package cri

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/meta"
)

// PodSandboxStatus reports a pod's state, IPs and namespaces and, verbose,
// what crictl inspectp shows under "info".
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	rec, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	sb, cfg, err := s.podSandbox(rec)
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.PodSandboxStatus{
		Id: sb.Id, Metadata: sb.Metadata, State: sb.State, CreatedAt: sb.CreatedAt,
		Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
		Network: &runtimeapi.PodSandboxNetworkStatus{},
	}
	if len(rec.IPs) > 0 && rec.State == podReady {
		st.Network.Ip = rec.IPs[0]
		for _, ip := range rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		info, err := s.podInfoJSON(ctx, rec, cfg)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": info}
	}
	return resp, nil
}

// podInfo is PodSandboxStatus's verbose "info". Skiff runs no pause
// container, so unlike containerd's there is no sandbox process, image or
// spec; what the pod owns is its pinned namespaces, files and attachment.
type podInfo struct {
	// Pid is the host PID of the pod's init, PID 1 of the PID namespace
	// its containers share; 0 when there is none, and PidNote says why.
	Pid     int    `json:"pid"`
	PidNote string `json:"pidNote,omitempty"`
	// ShimPid is the host PID of the pod's skiff-shim, which runs its
	// containers; 0 when it does not answer (stopped pod, dead shim).
	ShimPid int `json:"shimPid"`
	// Namespaces are the pinned namespace files by kind (net, ipc, uts,
	// pid); kinds the pod shares with the node or its containers do not
	// share are absent.
	Namespaces map[string]string `json:"namespaces"`
	// ShmPath is the pod's /dev/shm (the node's with host IPC).
	ShmPath string `json:"shmPath,omitempty"`
	// Files are the hostname, hosts and resolv.conf files containers mount.
	Files          map[string]string `json:"files,omitempty"`
	CgroupParent   string            `json:"cgroupParent,omitempty"`
	RuntimeHandler string            `json:"runtimeHandler"`
	// IPs are the pod's addresses, primary first, as CNI ADD gave them.
	IPs []string `json:"ips,omitempty"`
	// CNIResult is the plugins' result (CNI 1.0 form) while attached.
	CNIResult json.RawMessage              `json:"cniResult,omitempty"`
	Config    *runtimeapi.PodSandboxConfig `json:"config"`
	// Resources and Overhead are the pod-level values of the last
	// UpdatePodSandboxResources.
	Resources *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
	Overhead  *runtimeapi.LinuxContainerResources `json:"overhead,omitempty"`
}

func (s *Server) podInfoJSON(ctx context.Context, rec *meta.Pod, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	info := podInfo{
		Namespaces: map[string]string{}, ShmPath: rec.Files.Shm,
		Files:        map[string]string{"hostname": rec.Files.Hostname, "hosts": rec.Files.Hosts, "resolv.conf": rec.Files.ResolvConf},
		CgroupParent: rec.CgroupParent, RuntimeHandler: rec.RuntimeHandler, Config: cfg,
	}
	if info.RuntimeHandler == "" {
		info.RuntimeHandler = RuntimeName
	}
	var err error
	if info.Resources, err = podResources(rec.Resources); err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", rec.ID, err)
	}
	if info.Overhead, err = podResources(rec.Overhead); err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", rec.ID, err)
	}
	for k, p := range map[string]string{"net": rec.Namespaces.Net, "ipc": rec.Namespaces.IPC, "uts": rec.Namespaces.UTS, "pid": rec.Namespaces.PID, "user": rec.Namespaces.User} {
		if p != "" {
			info.Namespaces[k] = p
		}
	}
	info.Pid, info.ShimPid, info.PidNote = s.podPIDs(ctx, rec, cfg)
	if rec.State == podReady {
		info.IPs = rec.IPs
	}
	if rec.NetworkSetUp && s.network != nil {
		res, err := s.network.Result(ctx, rec.ID)
		switch {
		case err == nil:
			info.CNIResult = res
		case !errdefs.IsNotFound(err):
			return "", fmt.Errorf("pod sandbox %s: network result: %w", rec.ID, err)
		}
	}
	b, err := json.Marshal(&info)
	if err != nil {
		return "", fmt.Errorf("pod sandbox %s: encode info: %w", rec.ID, err)
	}
	return string(b), nil
}

// podPIDs are the host PIDs of the pod's init and shim, with the reason
// when there is no init.
func (s *Server) podPIDs(ctx context.Context, rec *meta.Pod, cfg *runtimeapi.PodSandboxConfig) (initPid, shimPid int, note string) {
	if rec.State != podReady {
		return 0, 0, "no pod init: the pod is not ready"
	}
	shim, err := s.shims.Connect(ctx, rec.ID)
	if err != nil {
		return 0, 0, fmt.Sprintf("pod init unknown: the pod's shim does not answer: %v", err)
	}
	defer shim.Close()
	shimPid = shim.Pid()
	switch cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() {
	case runtimeapi.NamespaceMode_POD:
	case runtimeapi.NamespaceMode_NODE:
		return 0, shimPid, "no pod init: the containers use the node's PID namespace"
	default:
		return 0, shimPid, "no pod init: each container has its own PID namespace, and Skiff runs no pause process"
	}
	if pid := shim.InitPID(); pid > 0 {
		return pid, shimPid, ""
	}
	return 0, shimPid, "pod init unknown: the pod's shim reports none"
}
