package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/meta"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// defaultCgroupParent holds the containers of pods that name no parent.
const defaultCgroupParent = "/skiff"

func cgroupPath(podCfg *runtimeapi.PodSandboxConfig, id string) string {
	parent := podCfg.GetLinux().GetCgroupParent()
	if parent == "" {
		parent = defaultCgroupParent
	}
	return filepath.Join(parent, id)
}

// containerCgroup returns the cgroup path of a container: the one its
// record keeps, or for records from before it was kept, the one its pod's
// recorded config gives.
func (s *Server) containerCgroup(rec *meta.Container) (string, error) {
	if rec.CgroupPath != "" {
		return rec.CgroupPath, nil
	}
	pod, err := s.meta.Pod(rec.PodID)
	if err != nil {
		return "", err
	}
	cfg, err := podConfig(pod)
	if err != nil {
		return "", err
	}
	return cgroupPath(cfg, rec.ID), nil
}

// containerUsage is what a container uses, read once per request and
// shared by the stats RPCs and the metrics RPCs, so both report the same
// figures from the same reads.
type containerUsage struct {
	rec *meta.Container
	cfg *runtimeapi.ContainerConfig
	// at is when the usage was read, in Unix nanoseconds.
	at int64
	// path is the container's cgroup path; "" when it could not be
	// resolved.
	path string
	// cgroup is nil when the container's cgroup is gone (exited and
	// cleaned up): it then uses nothing.
	cgroup *cgroups.Stats
	// layer is nil when Skiff was given no writable-layer root or the
	// layer could not be measured.
	layer *runtimeapi.FilesystemUsage
	// procs is what the processes hold open, read for metrics only; nil
	// otherwise.
	procs *ProcessStats
}

// containerUsage reads a container's cgroup (the executor in the pod's
// shim is its only writer) and its writable layer.
func (s *Server) containerUsage(ctx context.Context, rec *meta.Container) (*containerUsage, error) {
	cfg, err := containerConfig(rec)
	if err != nil {
		return nil, err
	}
	u := &containerUsage{rec: rec, cfg: cfg, at: time.Now().UnixNano()}
	// A record from before cgroup paths were kept, whose pod record is
	// gone, has no cgroup left either.
	path, err := s.containerCgroup(rec)
	if err == nil {
		u.path = path
		u.cgroup, err = s.kernel.CgroupStats(path)
	}
	if err != nil {
		if !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("stats of container %s: %w", rec.ID, err)
		}
		u.cgroup = nil
	}
	if s.rootfsRoot != "" {
		// The filesystem is the one holding every writable layer, named as
		// ImageFsInfo's container_filesystems names it: the kubelet looks
		// its capacity up once per mountpoint.
		if used, inodes, err := s.layers.get(ctx, s.lifetime(), s.writableLayer(rec.ID)); err == nil {
			u.layer = &runtimeapi.FilesystemUsage{
				Timestamp: u.at, FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: s.rootfsRoot},
				UsedBytes: &runtimeapi.UInt64Value{Value: used}, InodesUsed: &runtimeapi.UInt64Value{Value: inodes},
			}
		}
	}
	return u, nil
}

// stats is the usage as ContainerStats reports it.
func (u *containerUsage) stats() *runtimeapi.ContainerStats {
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id: u.rec.ID, Metadata: u.cfg.GetMetadata(), Labels: u.cfg.GetLabels(), Annotations: u.cfg.GetAnnotations(),
		},
		Cpu:           &runtimeapi.CpuUsage{Timestamp: u.at, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
		Memory:        &runtimeapi.MemoryUsage{Timestamp: u.at, WorkingSetBytes: &runtimeapi.UInt64Value{}},
		Swap:          &runtimeapi.SwapUsage{Timestamp: u.at},
		WritableLayer: u.layer,
	}
	if st := u.cgroup; st != nil {
		out.Cpu.UsageCoreNanoSeconds.Value = st.CPU.UsageNanos
		m := out.Memory
		m.WorkingSetBytes.Value = st.Memory.WorkingSet
		m.UsageBytes = &runtimeapi.UInt64Value{Value: st.Memory.Usage}
		m.RssBytes = &runtimeapi.UInt64Value{Value: st.Memory.RSS}
		m.PageFaults = &runtimeapi.UInt64Value{Value: st.Memory.PageFaults}
		m.MajorPageFaults = &runtimeapi.UInt64Value{Value: st.Memory.MajorPageFaults}
		if st.Memory.Limit > 0 && st.Memory.Limit < 1<<62 && st.Memory.Limit > st.Memory.WorkingSet {
			m.AvailableBytes = &runtimeapi.UInt64Value{Value: st.Memory.Limit - st.Memory.WorkingSet}
		}
		out.Swap.SwapUsageBytes = &runtimeapi.UInt64Value{Value: st.Memory.Swap}
		if p := st.PSI; p != nil {
			out.Cpu.Psi, m.Psi = criPSI(p.CPU), criPSI(p.Memory)
			out.Io = &runtimeapi.IoUsage{Timestamp: u.at, Psi: criPSI(p.IO)}
		}
	}
	return out
}

// criPSI is a pressure file in the CRI's form.
func criPSI(p cgroups.Pressure) *runtimeapi.PsiStats {
	data := func(d cgroups.PressureData) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: d.Total, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Full: data(p.Full), Some: data(p.Some)}
}

// containerStats reads usage from the container's cgroup; a container whose
// cgroup is gone (exited and cleaned up) reports zero usage.
func (s *Server) containerStats(ctx context.Context, rec *meta.Container) (*runtimeapi.ContainerStats, error) {
	u, err := s.containerUsage(ctx, rec)
	if err != nil {
		return nil, err
	}
	return u.stats(), nil
}

// ContainerStats reports a container's CPU, memory and writable layer usage.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerStats(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

func (s *Server) filteredContainers(id, podID string, labels map[string]string) ([]*meta.Container, error) {
	all, err := s.meta.Containers()
	if err != nil {
		return nil, err
	}
	var out []*meta.Container
	for _, rec := range all {
		if id != "" && !strings.HasPrefix(rec.ID, id) {
			continue
		}
		if podID != "" && !strings.HasPrefix(rec.PodID, podID) {
			continue
		}
		if !matchLabels(labels, rec.Labels) {
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// ListContainerStats reports usage of the containers matching the filter.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	recs, err := s.filteredContainers(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, rec := range recs {
		st, err := s.containerStats(ctx, rec)
		if err != nil {
			s.log.Warn("container stats", "container", rec.ID, "err", err)
			continue
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// podStats sums the usage of a pod's containers and reads its network
// interfaces.
func (s *Server) podStats(ctx context.Context, pod *meta.Pod) (*runtimeapi.PodSandboxStats, error) {
	cfg, err := podConfig(pod)
	if err != nil {
		return nil, err
	}
	recs, err := s.podContainers(pod.ID)
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	linux := &runtimeapi.LinuxPodSandboxStats{
		Cpu: &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
		Memory: &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{}, UsageBytes: &runtimeapi.UInt64Value{}, RssBytes: &runtimeapi.UInt64Value{},
			PageFaults: &runtimeapi.UInt64Value{}, MajorPageFaults: &runtimeapi.UInt64Value{}},
		Process: &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{}},
	}
	for _, rec := range recs {
		u, err := s.containerUsage(ctx, rec)
		if err != nil {
			continue
		}
		st := u.stats()
		linux.Containers = append(linux.Containers, st)
		linux.Cpu.UsageCoreNanoSeconds.Value += st.GetCpu().GetUsageCoreNanoSeconds().GetValue()
		linux.Memory.WorkingSetBytes.Value += st.GetMemory().GetWorkingSetBytes().GetValue()
		linux.Memory.UsageBytes.Value += st.GetMemory().GetUsageBytes().GetValue()
		linux.Memory.RssBytes.Value += st.GetMemory().GetRssBytes().GetValue()
		linux.Memory.PageFaults.Value += st.GetMemory().GetPageFaults().GetValue()
		linux.Memory.MajorPageFaults.Value += st.GetMemory().GetMajorPageFaults().GetValue()
		if u.cgroup != nil {
			linux.Process.ProcessCount.Value += u.cgroup.Pids.Current
		}
	}
	if nc, ok := s.podCPU.rate(pod.ID, now, linux.Cpu.UsageCoreNanoSeconds.Value); ok {
		linux.Cpu.UsageNanoCores = &runtimeapi.UInt64Value{Value: nc}
	}
	// Pressure and the memory limit are the pod cgroup's own, which the
	// kubelet made (cgroup_parent): pressure does not add up over
	// containers.
	if parent := cfg.GetLinux().GetCgroupParent(); parent != "" {
		st, err := s.kernel.CgroupStats(parent)
		switch {
		case err == nil:
			if st.PSI != nil {
				linux.Cpu.Psi, linux.Memory.Psi = criPSI(st.PSI.CPU), criPSI(st.PSI.Memory)
				linux.Io = &runtimeapi.IoUsage{Timestamp: now, Psi: criPSI(st.PSI.IO)}
			}
			if ws, limit := linux.Memory.WorkingSetBytes.Value, st.Memory.Limit; limit > 0 && limit < 1<<62 {
				avail := uint64(0)
				if limit > ws {
					avail = limit - ws
				}
				linux.Memory.AvailableBytes = &runtimeapi.UInt64Value{Value: avail}
			}
		case !errdefs.IsNotFound(err):
			s.log.Warn("pod cgroup stats", "pod", pod.ID, "cgroup", parent, "err", err)
		}
	}
	if linux.Network, err = s.podNetworkUsage(ctx, pod); err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: pod.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations()},
		Linux:      linux,
	}, nil
}

// PodSandboxStats reports a pod's usage as the sum of its containers'.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	pod, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(ctx, pod)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports usage of the pods matching the filter.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	pods, err := s.meta.Pods()
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for _, p := range pods {
		if f.GetId() != "" && !strings.HasPrefix(p.ID, f.GetId()) {
			continue
		}
		if !matchLabels(f.GetLabelSelector(), p.Labels) {
			continue
		}
		st, err := s.podStats(ctx, p)
		if err != nil {
			s.log.Warn("pod sandbox stats", "pod", p.ID, "err", err)
			continue
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// UpdateContainerResources has the pod's shim apply new limits to a
// container's cgroup (its executor writes them) and, once they are in,
// records them for ContainerStatus and the stored spec.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	res, err := spec.Resources(req.GetLinux())
	if err != nil {
		return nil, err
	}
	cgPath, err := s.containerCgroup(rec)
	if err != nil {
		return nil, fmt.Errorf("update resources of container %s: %w", rec.ID, err)
	}
	// A released container (exited, its cgroup gone) has only its record
	// to update, as with containerd, which updates a stopped container's
	// spec.
	if !s.released.has(rec.ID) {
		shim, err := s.shims.Connect(ctx, rec.PodID)
		if err != nil {
			return nil, fmt.Errorf("update resources of container %s: %w", rec.ID, err)
		}
		err = shim.UpdateResources(ctx, rec.ID, res)
		shim.Close()
		if err != nil {
			return nil, fmt.Errorf("update resources of container %s: %w", rec.ID, err)
		}
	}
	// Re-read under the lock: the record may have changed since the lookup.
	if rec, err = s.meta.Container(rec.ID); err != nil {
		return nil, fmt.Errorf("update resources: %w", err)
	}
	if err := s.recordUpdate(rec, res, cgPath); err != nil {
		return nil, fmt.Errorf("update resources of container %s: %w", rec.ID, err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// StreamContainerStats sends the ListContainerStats result one container a message.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	resp, err := s.ListContainerStats(stream.Context(), &runtimeapi.ListContainerStatsRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	for _, st := range resp.Stats {
		if err := stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: []*runtimeapi.ContainerStats{st}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamPodSandboxStats sends the ListPodSandboxStats result one pod a message.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	resp, err := s.ListPodSandboxStats(stream.Context(), &runtimeapi.ListPodSandboxStatsRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	for _, st := range resp.Stats {
		if err := stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: []*runtimeapi.PodSandboxStats{st}}); err != nil {
			return err
		}
	}
	return nil
}
