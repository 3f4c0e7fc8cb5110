package cri

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/oci/cgroups"
)

// cAdvisorMetrics are the names, types and extra label keys of the metrics
// the kubelet serves on /metrics/cadvisor that Skiff reports, as cAdvisor
// defines them: a golden list, so that a renamed metric fails here.
var cAdvisorMetrics = map[string]struct {
	typ   runtimeapi.MetricType
	extra []string
}{
	"container_cpu_usage_seconds_total":                {metricCounter, nil},
	"container_cpu_user_seconds_total":                 {metricCounter, nil},
	"container_cpu_system_seconds_total":               {metricCounter, nil},
	"container_cpu_cfs_periods_total":                  {metricCounter, nil},
	"container_cpu_cfs_throttled_periods_total":        {metricCounter, nil},
	"container_cpu_cfs_throttled_seconds_total":        {metricCounter, nil},
	"container_memory_usage_bytes":                     {metricGauge, nil},
	"container_memory_working_set_bytes":               {metricGauge, nil},
	"container_memory_rss":                             {metricGauge, nil},
	"container_memory_cache":                           {metricGauge, nil},
	"container_memory_swap":                            {metricGauge, nil},
	"container_memory_total_inactive_file_bytes":       {metricGauge, nil},
	"container_oom_events_total":                       {metricCounter, nil},
	"container_processes":                              {metricGauge, nil},
	"container_fs_usage_bytes":                         {metricGauge, []string{"device"}},
	"container_last_seen":                              {metricGauge, nil},
	"container_network_receive_bytes_total":            {metricCounter, []string{"interface"}},
	"container_network_receive_errors_total":           {metricCounter, []string{"interface"}},
	"container_network_transmit_bytes_total":           {metricCounter, []string{"interface"}},
	"container_network_transmit_errors_total":          {metricCounter, []string{"interface"}},
	"container_network_receive_packets_total":          {metricCounter, []string{"interface"}},
	"container_network_receive_packets_dropped_total":  {metricCounter, []string{"interface"}},
	"container_network_transmit_packets_total":         {metricCounter, []string{"interface"}},
	"container_network_transmit_packets_dropped_total": {metricCounter, []string{"interface"}},
	"container_memory_max_usage_bytes":                 {metricGauge, nil},
	"container_memory_failcnt":                         {metricCounter, nil},
	"container_memory_mapped_file":                     {metricGauge, nil},
	"container_memory_failures_total":                  {metricCounter, []string{"failure_type", "scope"}},
	"container_memory_events_high_total":               {metricCounter, nil},
	"container_memory_events_max_total":                {metricCounter, nil},
	"container_spec_cpu_period":                        {metricGauge, nil},
	"container_spec_cpu_quota":                         {metricGauge, nil},
	"container_spec_cpu_shares":                        {metricGauge, nil},
	"container_spec_memory_limit_bytes":                {metricGauge, nil},
	"container_spec_memory_reservation_limit_bytes":    {metricGauge, nil},
	"container_spec_memory_swap_limit_bytes":           {metricGauge, nil},
	"container_start_time_seconds":                     {metricGauge, nil},
	"container_threads":                                {metricGauge, nil},
	"container_threads_max":                            {metricGauge, nil},
	"container_file_descriptors":                       {metricGauge, nil},
	"container_sockets":                                {metricGauge, nil},
	"container_ulimits_soft":                           {metricGauge, []string{"ulimit"}},
}

func TestListMetricDescriptors(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.s.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"pod", "namespace", "container", "id", "image"}
	seen := map[string]bool{}
	for _, d := range resp.Descriptors {
		want, ok := cAdvisorMetrics[d.Name]
		if !ok {
			t.Errorf("descriptor %q is not a cAdvisor metric Skiff reports", d.Name)
			continue
		}
		if seen[d.Name] {
			t.Errorf("descriptor %q listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" {
			t.Errorf("descriptor %q has no help", d.Name)
		}
		if wantKeys := append(slices.Clone(base), want.extra...); !reflect.DeepEqual(d.LabelKeys, wantKeys) {
			t.Errorf("descriptor %q label keys %q, want %q", d.Name, d.LabelKeys, wantKeys)
		}
		if got, _ := descOf(d.Name); got.typ != want.typ {
			t.Errorf("metric %q typed %v, want %v", d.Name, got.typ, want.typ)
		}
	}
	if len(seen) != len(cAdvisorMetrics) {
		t.Errorf("%d descriptors, want %d", len(seen), len(cAdvisorMetrics))
	}
	// The response is built afresh: writing it leaves the table alone.
	resp.Descriptors[0].LabelKeys[0] = "x"
	again, _ := e.s.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if again.Descriptors[0].LabelKeys[0] != "pod" {
		t.Errorf("descriptor table written through a response: %q", again.Descriptors[0].LabelKeys)
	}
}

// metricsEnv is a ready pod "p" with a container "c1" whose cgroup has
// known stats, a container "gone" whose cgroup is gone, and a stopped pod
// "q" with a container of its own.
type metricsEnv struct {
	*testEnv
	pod, c1, gone, stopped, stoppedCtr string
}

func newMetricsEnv(t *testing.T) *metricsEnv {
	t.Helper()
	e := &metricsEnv{testEnv: newTestEnv(t)}
	e.netStats.ifaces = []InterfaceStats{
		{Name: "eth0", RxBytes: 1500, RxPackets: 10, RxErrors: 1, RxDropped: 3, TxBytes: 900, TxPackets: 6, TxErrors: 2, TxDropped: 4},
		{Name: "net1", RxBytes: 7, TxBytes: 8},
	}
	podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	e.pod = e.runPod(t, podCfg)
	cfg := ctrConfig("c1", nil)
	cfg.Image.UserSpecifiedImage = "busybox:1.36"
	e.c1 = e.createContainer(t, e.pod, podCfg, cfg)
	e.gone = e.createContainer(t, e.pod, podCfg, ctrConfig("gone", nil))

	qCfg := podConfigFor("q", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	e.stopped = e.runPod(t, qCfg)
	e.stoppedCtr = e.createContainer(t, e.stopped, qCfg, ctrConfig("c", nil))
	if _, err := e.s.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: e.stopped}); err != nil {
		t.Fatal(err)
	}

	st := &cgroups.Stats{
		CPU: cgroups.CPUStats{UsageNanos: 2_500_000_000, UserNanos: 1_900_000_000, SystemNanos: 600_000_000,
			Periods: 40, ThrottledPeriods: 3, ThrottledNanos: 4_200_000_000},
		Memory: cgroups.MemoryStats{Usage: 80 << 20, WorkingSet: 70 << 20, RSS: 64 << 20, Cache: 16 << 20,
			InactiveFile: 10 << 20, Swap: 1 << 20, Limit: 1 << 30, OOMKills: 2},
		Pids:   cgroups.PidsStats{Current: 3, Limit: math.MaxUint64},
		Limits: cgroups.Limits{CPUShares: 512, CPUPeriod: 100000, CPUQuota: math.MaxUint64, MemoryReservation: 9223372036854771712, SwapLimit: 1 << 30},
		PSI:    &cgroups.PSI{CPU: cgroups.Pressure{Some: cgroups.PressureData{Avg10: 1.5, Total: 42}}},
	}
	st.Memory.MaxUsage, st.Memory.Failcnt, st.Memory.MappedFile = 90<<20, 1, 4<<20
	st.Memory.PageFaults, st.Memory.MajorPageFaults = 100, 5
	k := fakeKernel{hugetlb: true, cgroups: map[string]*cgroups.Stats{}, procs: map[string]*ProcessStats{}}
	for _, id := range []string{e.c1, e.stoppedCtr} {
		rec, err := e.s.meta.Container(id)
		if err != nil {
			t.Fatal(err)
		}
		k.cgroups[rec.CgroupPath] = st
		k.procs[rec.CgroupPath] = &ProcessStats{Processes: 2, FileDescriptors: 9, Sockets: 1, NoFileSoft: 1024, HasNoFile: true}
	}
	// The pod cgroup the kubelet made: only its pressure is read.
	k.cgroups[podCfg.Linux.CgroupParent] = &cgroups.Stats{
		Memory: cgroups.MemoryStats{Limit: 512 << 20},
		PSI:    &cgroups.PSI{Memory: cgroups.Pressure{Full: cgroups.PressureData{Total: 77}}},
	}
	e.s.kernel = k
	return e
}

func TestListPodSandboxMetrics(t *testing.T) {
	e := newMetricsEnv(t)
	ctx := context.Background()
	resp, err := e.s.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.PodMetrics) != 1 || resp.PodMetrics[0].PodSandboxId != e.pod {
		t.Fatalf("pods %v, want only the ready pod %s", resp.PodMetrics, e.pod)
	}
	pm := resp.PodMetrics[0]
	checkDescribed(t, e.s, pm)

	// The pod's own metrics: the interfaces, labelled by name.
	net := map[string]uint64{}
	for _, m := range pm.Metrics {
		if want := []string{"p", "ns", "", e.pod, ""}; !reflect.DeepEqual(m.LabelValues[:5], want) {
			t.Errorf("%s labels %q, want %q first", m.Name, m.LabelValues, want)
		}
		net[m.Name+"/"+m.LabelValues[5]] = m.Value.GetValue()
	}
	wantNet := map[string]uint64{
		metricNetRxBytes + "/eth0": 1500, metricNetRxErrors + "/eth0": 1, metricNetTxBytes + "/eth0": 900, metricNetTxErrors + "/eth0": 2,
		metricNetRxPackets + "/eth0": 10, metricNetRxDropped + "/eth0": 3, metricNetTxPackets + "/eth0": 6, metricNetTxDropped + "/eth0": 4,
		metricNetRxBytes + "/net1": 7, metricNetRxErrors + "/net1": 0, metricNetTxBytes + "/net1": 8, metricNetTxErrors + "/net1": 0,
		metricNetRxPackets + "/net1": 0, metricNetRxDropped + "/net1": 0, metricNetTxPackets + "/net1": 0, metricNetTxDropped + "/net1": 0,
	}
	if !reflect.DeepEqual(net, wantNet) {
		t.Errorf("pod metrics %v, want %v", net, wantNet)
	}

	// The container whose cgroup is gone is left out.
	if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != e.c1 {
		t.Fatalf("container metrics %v, want only %s", pm.ContainerMetrics, e.c1)
	}
	got := map[string]uint64{}
	for _, m := range pm.ContainerMetrics[0].Metrics {
		if want := []string{"p", "ns", "c1", e.c1, "busybox:1.36"}; !reflect.DeepEqual(m.LabelValues[:5], want) {
			t.Errorf("%s labels %q, want %q first", m.Name, m.LabelValues, want)
		}
		if m.Timestamp != 0 {
			t.Errorf("%s timestamp %d, want 0 (read live)", m.Name, m.Timestamp)
		}
		key := strings.Join(append([]string{m.Name}, m.LabelValues[5:]...), "/")
		if _, dup := got[key]; dup {
			t.Errorf("%s reported twice", key)
		}
		got[key] = m.Value.GetValue()
	}
	for name, want := range map[string]uint64{
		metricCPUUsage: 2, metricCPUUser: 1, metricCPUSystem: 0,
		metricCFSPeriods: 40, metricCFSThrottled: 3, metricCFSThrottledSecs: 4,
		metricMemoryUsage: 80 << 20, metricMemoryWorkingSet: 70 << 20, metricMemoryRSS: 64 << 20,
		metricMemoryCache: 16 << 20, metricMemorySwap: 1 << 20, metricMemoryInactive: 10 << 20,
		metricOOMEvents:      2,
		metricMemoryMaxUsage: 90 << 20, metricMemoryFailcnt: 1, metricMemoryMapped: 4 << 20,
		metricMemoryFailures + "/pgfault/container": 100, metricMemoryFailures + "/pgmajfault/container": 5,
		metricMemoryFailures + "/pgfault/hierarchy": 100, metricMemoryFailures + "/pgmajfault/hierarchy": 5,
		// Unlimited is 0, as cAdvisor reports it; so is the v1 soft limit's
		// page-rounded maximum.
		metricSpecCPUPeriod: 100000, metricSpecCPUShares: 512, metricSpecMemLimit: 1 << 30,
		metricSpecMemReserve: 0, metricSpecMemSwap: 1 << 30,
		metricThreads: 3, metricThreadsMax: 0,
		// From the processes, not the tasks.
		metricProcesses: 2, metricFileDescriptors: 9, metricSockets: 1,
		metricUlimitsSoft + "/max_open_files": 1024,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %d (reported %v), want %d", name, v, ok, want)
		}
	}
	for _, name := range []string{metricLastSeen, metricStartTime} {
		if got[name] == 0 {
			t.Errorf("%s = 0", name)
		}
	}
	// No quota, no quota metric; v1 has no memory events.
	for _, name := range []string{metricSpecCPUQuota, metricMemoryEventsHigh, metricMemoryEventsMax} {
		if _, ok := got[name]; ok {
			t.Errorf("%s reported", name)
		}
	}

	// ContainerStats reads the same cgroup.
	cs, err := e.s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: e.c1})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Stats.GetMemory().GetWorkingSetBytes().GetValue() != 70<<20 || cs.Stats.GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2_500_000_000 {
		t.Errorf("ContainerStats = %v", cs.Stats)
	}
	if p := cs.Stats.GetCpu().GetPsi().GetSome(); p.GetAvg10() != 1.5 || p.GetTotal() != 42 || cs.Stats.GetIo().GetPsi() == nil || cs.Stats.GetMemory().GetPsi() == nil {
		t.Errorf("ContainerStats PSI: cpu %v, memory %v, io %v", cs.Stats.GetCpu().GetPsi(), cs.Stats.GetMemory().GetPsi(), cs.Stats.GetIo())
	}
	ps, err := e.s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: e.pod})
	if err != nil {
		t.Fatal(err)
	}
	if l := ps.Stats.GetLinux(); l.GetProcess().GetProcessCount().GetValue() != 3 || l.GetMemory().GetWorkingSetBytes().GetValue() != 70<<20 {
		t.Errorf("PodSandboxStats = %v, want the processes and working set of c1", l)
	}
	if l := ps.Stats.GetLinux(); l.GetMemory().GetPsi().GetFull().GetTotal() != 77 || l.GetCpu().GetPsi() == nil || l.GetIo().GetPsi() == nil {
		t.Errorf("PodSandboxStats PSI = %v, %v, %v; want the pod cgroup's", l.GetCpu().GetPsi(), l.GetMemory().GetPsi(), l.GetIo())
	}
	// What the kubelet takes as it comes for a pod: page faults summed,
	// available memory against the pod cgroup's limit, and a CPU rate from
	// the second reading on.
	if m := ps.Stats.GetLinux().GetMemory(); m.GetPageFaults().GetValue() != 100 || m.GetMajorPageFaults().GetValue() != 5 ||
		m.GetAvailableBytes().GetValue() != 512<<20-70<<20 {
		t.Errorf("pod memory = %v, want 100 page faults, 5 major, %d available", m, 512<<20-70<<20)
	}
	if c := ps.Stats.GetLinux().GetCpu(); c.GetUsageNanoCores() != nil {
		t.Errorf("first reading has a CPU rate: %v", c)
	}
	time.Sleep(2 * time.Millisecond)
	ps, err = e.s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: e.pod})
	if err != nil {
		t.Fatal(err)
	}
	if c := ps.Stats.GetLinux().GetCpu(); c.GetUsageNanoCores() == nil || c.GetUsageNanoCores().GetValue() != 0 {
		t.Errorf("second reading: CPU rate %v, want 0 (usage unchanged)", c.GetUsageNanoCores())
	}
}

// checkDescribed checks that every metric of pm is described, with as
// many label values as its descriptor has keys, and typed as in the table.
func checkDescribed(t *testing.T, s *Server, pm *runtimeapi.PodSandboxMetrics) {
	t.Helper()
	resp, err := s.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, d := range resp.Descriptors {
		keys[d.Name] = len(d.LabelKeys)
	}
	all := slices.Clone(pm.Metrics)
	for _, c := range pm.ContainerMetrics {
		all = append(all, c.Metrics...)
	}
	for _, m := range all {
		n, ok := keys[m.Name]
		if !ok {
			t.Errorf("metric %q has no descriptor", m.Name)
			continue
		}
		if len(m.LabelValues) != n {
			t.Errorf("metric %q has %d label values %q, its descriptor %d keys", m.Name, len(m.LabelValues), m.LabelValues, n)
		}
		if d, _ := descOf(m.Name); m.MetricType != d.typ {
			t.Errorf("metric %q typed %v, want %v", m.Name, m.MetricType, d.typ)
		}
	}
}

func TestListPodSandboxMetricsWritableLayer(t *testing.T) {
	e := newMetricsEnv(t)
	// RootfsRoot is set in the test env, so the layer is measured (an
	// upper directory that does not exist uses nothing).
	resp, err := e.s.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(resp.PodMetrics) != 1 {
		t.Fatalf("ListPodSandboxMetrics = %v, %v", resp, err)
	}
	var fs []*runtimeapi.Metric
	for _, m := range resp.PodMetrics[0].ContainerMetrics[0].Metrics {
		if m.Name == metricFsUsage {
			fs = append(fs, m)
		}
	}
	if len(fs) != 1 || fs[0].LabelValues[5] != e.s.rootfsRoot {
		t.Errorf("%s = %v, want one on device %s", metricFsUsage, fs, e.s.rootfsRoot)
	}
}

func TestListPodSandboxMetricsUnreadablePod(t *testing.T) {
	e := newMetricsEnv(t)
	e.netStats.err = errors.New("setns: operation not permitted")
	resp, err := e.s.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v, want the pod left out", err)
	}
	if len(resp.PodMetrics) != 0 {
		t.Errorf("pods %v, want none", resp.PodMetrics)
	}
}

func TestListPodSandboxMetricsUnreadableContainer(t *testing.T) {
	e := newMetricsEnv(t)
	rec, err := e.s.meta.Container(e.c1)
	if err != nil {
		t.Fatal(err)
	}
	k := e.s.kernel.(fakeKernel)
	k.cgroupErrs = map[string]error{rec.CgroupPath: errors.New("read memory.stat: input/output error")}
	e.s.kernel = k
	resp, err := e.s.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(resp.PodMetrics) != 1 {
		t.Fatalf("ListPodSandboxMetrics = %v, %v; want the pod", resp, err)
	}
	if pm := resp.PodMetrics[0]; len(pm.ContainerMetrics) != 0 || len(pm.Metrics) == 0 {
		t.Errorf("pod metrics %v, want its network and no container", pm)
	}
}

func TestListPodSandboxMetricsHostNetwork(t *testing.T) {
	e := newTestEnv(t)
	e.netStats.ifaces = []InterfaceStats{{Name: "eth0", RxBytes: 1}}
	pod := e.runPod(t, podConfigFor("h", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_NODE))
	resp, err := e.s.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(resp.PodMetrics) != 1 || resp.PodMetrics[0].PodSandboxId != pod {
		t.Fatalf("ListPodSandboxMetrics = %v, %v", resp, err)
	}
	if m := resp.PodMetrics[0].Metrics; len(m) != 0 {
		t.Errorf("host-network pod reports %v, want no network metrics (the node's traffic)", m)
	}
}

// fakeMetricsStream records what StreamPodSandboxMetrics sends.
type fakeMetricsStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*runtimeapi.StreamPodSandboxMetricsResponse
}

func (f *fakeMetricsStream) Context() context.Context { return f.ctx }
func (f *fakeMetricsStream) Send(m *runtimeapi.StreamPodSandboxMetricsResponse) error {
	f.sent = append(f.sent, m)
	return nil
}

func TestStreamPodSandboxMetrics(t *testing.T) {
	e := newMetricsEnv(t)
	podCfg := podConfigFor("p2", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	second := e.runPod(t, podCfg)
	stream := &fakeMetricsStream{ctx: context.Background()}
	if err := e.s.StreamPodSandboxMetrics(&runtimeapi.StreamPodSandboxMetricsRequest{}, stream); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range stream.sent {
		if len(m.PodSandboxMetrics) != 1 {
			t.Errorf("message with %d pods, want 1", len(m.PodSandboxMetrics))
		}
		for _, p := range m.PodSandboxMetrics {
			ids = append(ids, p.PodSandboxId)
			checkDescribed(t, e.s, p)
		}
	}
	if want := []string{e.pod, second}; !reflect.DeepEqual(sorted(ids), sorted(want)) {
		t.Errorf("streamed pods %q, want %q", ids, want)
	}
}
