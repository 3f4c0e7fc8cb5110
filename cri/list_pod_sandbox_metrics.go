package cri

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/meta"
)

// ListPodSandboxMetrics reports the metrics of every ready pod: its
// network interfaces as the pod's own metrics, and each container's
// cgroup and writable layer as the container's. Pods that are not ready
// are left out (their containers are stopped and their interfaces gone),
// as containerd does; so is a pod whose metrics cannot be read, which is
// logged, as ListPodSandboxStats does.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	pods, err := s.meta.Pods()
	if err != nil {
		return nil, fmt.Errorf("list pod sandbox metrics: %w", err)
	}
	// One read of the container records for all pods: the kubelet asks on
	// every scrape of /metrics/cadvisor.
	all, err := s.meta.Containers()
	if err != nil {
		return nil, fmt.Errorf("list pod sandbox metrics: %w", err)
	}
	byPod := map[string][]*meta.Container{}
	for _, c := range all {
		byPod[c.PodID] = append(byPod[c.PodID], c)
	}
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	for _, p := range pods {
		if p.State != podReady {
			continue
		}
		m, err := s.podMetrics(ctx, p, byPod[p.ID])
		if err != nil {
			s.log.Warn("pod sandbox metrics", "pod", p.ID, "err", err)
			continue
		}
		resp.PodMetrics = append(resp.PodMetrics, m)
	}
	return resp, nil
}

// podMetrics reads the metrics of a pod and of its containers recs,
// through the same paths as PodSandboxStats. A container whose usage
// cannot be read is logged and left out; one whose cgroup is gone has
// exited and reports nothing, as cAdvisor reports only cgroups that exist.
func (s *Server) podMetrics(ctx context.Context, pod *meta.Pod, recs []*meta.Container) (*runtimeapi.PodSandboxMetrics, error) {
	cfg, err := podConfig(pod)
	if err != nil {
		return nil, fmt.Errorf("metrics of pod %s: %w", pod.ID, err)
	}
	name, namespace := cfg.GetMetadata().GetName(), cfg.GetMetadata().GetNamespace()
	ifaces, err := s.podInterfaces(ctx, pod)
	if err != nil {
		return nil, err
	}
	out := &runtimeapi.PodSandboxMetrics{
		PodSandboxId: pod.ID,
		Metrics:      networkMetrics(name, namespace, pod.ID, ifaces),
	}
	now := time.Now()
	for _, rec := range recs {
		u, err := s.containerUsage(ctx, rec)
		if err != nil {
			s.log.Warn("container metrics", "pod", pod.ID, "container", rec.ID, "err", err)
			continue
		}
		if u.cgroup == nil {
			continue
		}
		// What the processes hold open is read for metrics only: the
		// stats RPCs have no field for it.
		u.procs, err = s.kernel.ProcessStats(u.path)
		if err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("container process metrics", "pod", pod.ID, "container", rec.ID, "err", err)
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: rec.ID, Metrics: u.metrics(name, namespace, now),
		})
	}
	return out, nil
}

// metricSet collects metrics that share their leading label values.
type metricSet struct {
	labels []string
	out    []*runtimeapi.Metric
}

// add appends one value, typed as its descriptor says. Timestamps stay 0:
// every value is read live for the request, which the CRI says so marks
// (the kubelet then stamps them with its scrape time).
func (m *metricSet) add(name string, v uint64, extra ...string) {
	d, _ := descOf(name)
	m.out = append(m.out, &runtimeapi.Metric{
		Name: name, MetricType: d.typ,
		LabelValues: append(slices.Clone(m.labels), extra...),
		Value:       &runtimeapi.UInt64Value{Value: v},
	})
}

// networkMetrics are a pod's interface counters, one set per interface.
// They belong to the pod, not to a container: the container and image
// labels are empty and id is the pod's, as with containerd.
func networkMetrics(pod, namespace, podID string, ifaces []InterfaceStats) []*runtimeapi.Metric {
	m := metricSet{labels: []string{pod, namespace, "", podID, ""}}
	for _, i := range ifaces {
		m.add(metricNetRxBytes, i.RxBytes, i.Name)
		m.add(metricNetRxPackets, i.RxPackets, i.Name)
		m.add(metricNetRxErrors, i.RxErrors, i.Name)
		m.add(metricNetRxDropped, i.RxDropped, i.Name)
		m.add(metricNetTxBytes, i.TxBytes, i.Name)
		m.add(metricNetTxPackets, i.TxPackets, i.Name)
		m.add(metricNetTxErrors, i.TxErrors, i.Name)
		m.add(metricNetTxDropped, i.TxDropped, i.Name)
	}
	return m.out
}

// metrics are a container's usage as cAdvisor names it; u.cgroup must not
// be nil. CPU times are whole seconds: a metric's value is an integer.
func (u *containerUsage) metrics(pod, namespace string, now time.Time) []*runtimeapi.Metric {
	m := metricSet{labels: []string{pod, namespace, u.cfg.GetMetadata().GetName(), u.rec.ID, u.image()}}
	cpu, mem, lim := u.cgroup.CPU, u.cgroup.Memory, u.cgroup.Limits
	sec := uint64(time.Second)
	m.add(metricCPUUsage, cpu.UsageNanos/sec)
	m.add(metricCPUUser, cpu.UserNanos/sec)
	m.add(metricCPUSystem, cpu.SystemNanos/sec)
	m.add(metricCFSPeriods, cpu.Periods)
	m.add(metricCFSThrottled, cpu.ThrottledPeriods)
	m.add(metricCFSThrottledSecs, cpu.ThrottledNanos/sec)
	m.add(metricMemoryUsage, mem.Usage)
	m.add(metricMemoryWorkingSet, mem.WorkingSet)
	m.add(metricMemoryRSS, mem.RSS)
	m.add(metricMemoryCache, mem.Cache)
	m.add(metricMemorySwap, mem.Swap)
	m.add(metricMemoryInactive, mem.InactiveFile)
	m.add(metricMemoryMaxUsage, mem.MaxUsage)
	m.add(metricMemoryFailcnt, mem.Failcnt)
	m.add(metricMemoryMapped, mem.MappedFile)
	// A container's cgroup has no children: its own page faults are its
	// hierarchy's.
	for _, scope := range []string{"container", "hierarchy"} {
		m.add(metricMemoryFailures, mem.PageFaults, "pgfault", scope)
		m.add(metricMemoryFailures, mem.MajorPageFaults, "pgmajfault", scope)
	}
	if ev := mem.Events; ev != nil {
		m.add(metricMemoryEventsHigh, ev.High)
		m.add(metricMemoryEventsMax, ev.Max)
	}
	m.add(metricOOMEvents, mem.OOMKills)
	// cAdvisor's spec: shares and period always, quota when there is one,
	// memory limits 0 when unlimited.
	m.add(metricSpecCPUPeriod, lim.CPUPeriod)
	if lim.CPUQuota != 0 && lim.CPUQuota != math.MaxUint64 {
		m.add(metricSpecCPUQuota, lim.CPUQuota)
	}
	m.add(metricSpecCPUShares, lim.CPUShares)
	m.add(metricSpecMemLimit, zeroIfUnlimited(mem.Limit))
	m.add(metricSpecMemReserve, zeroIfUnlimited(lim.MemoryReservation))
	m.add(metricSpecMemSwap, zeroIfUnlimited(lim.SwapLimit))
	m.add(metricThreads, u.cgroup.Pids.Current)
	m.add(metricThreadsMax, zeroIfUnlimited(u.cgroup.Pids.Limit))
	if p := u.procs; p != nil {
		m.add(metricProcesses, p.Processes)
		m.add(metricFileDescriptors, p.FileDescriptors)
		m.add(metricSockets, p.Sockets)
		if p.HasNoFile {
			m.add(metricUlimitsSoft, p.NoFileSoft, "max_open_files")
		}
	} else {
		m.add(metricProcesses, u.cgroup.Pids.Current)
	}
	if l := u.layer; l != nil {
		m.add(metricFsUsage, l.GetUsedBytes().GetValue(), l.GetFsId().GetMountpoint())
	}
	if !u.rec.CreatedAt.IsZero() {
		m.add(metricStartTime, uint64(u.rec.CreatedAt.Unix()))
	}
	m.add(metricLastSeen, uint64(now.Unix()))
	return m.out
}

// zeroIfUnlimited is a limit as cAdvisor reports it: 0 for unlimited (the v1
// page-rounded maximum, v2 "max").
func zeroIfUnlimited(v uint64) uint64 {
	if v > 1<<62 {
		return 0
	}
	return v
}

// image is the image label: the image as the pod spec names it, which the
// kubelet passes as user_specified_image, else the one Skiff resolved.
func (u *containerUsage) image() string {
	if img := u.cfg.GetImage().GetUserSpecifiedImage(); img != "" {
		return img
	}
	if u.rec.ImageName != "" {
		return u.rec.ImageName
	}
	return u.cfg.GetImage().GetImage()
}
