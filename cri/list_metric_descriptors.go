package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The metrics Skiff reports through ListPodSandboxMetrics (KEP-2371), with
// cAdvisor's names, types and label keys: with PodAndContainerStatsFromCRI
// the kubelet serves them on /metrics/cadvisor as they come, so anything
// else would break the dashboards and alerts written against cAdvisor.
const (
	metricCPUUsage         = "container_cpu_usage_seconds_total"
	metricCPUUser          = "container_cpu_user_seconds_total"
	metricCPUSystem        = "container_cpu_system_seconds_total"
	metricCFSPeriods       = "container_cpu_cfs_periods_total"
	metricCFSThrottled     = "container_cpu_cfs_throttled_periods_total"
	metricCFSThrottledSecs = "container_cpu_cfs_throttled_seconds_total"
	metricMemoryUsage      = "container_memory_usage_bytes"
	metricMemoryWorkingSet = "container_memory_working_set_bytes"
	metricMemoryRSS        = "container_memory_rss"
	metricMemoryCache      = "container_memory_cache"
	metricMemorySwap       = "container_memory_swap"
	metricMemoryInactive   = "container_memory_total_inactive_file_bytes"
	metricOOMEvents        = "container_oom_events_total"
	metricProcesses        = "container_processes"
	metricFsUsage          = "container_fs_usage_bytes"
	metricLastSeen         = "container_last_seen"
	metricNetRxBytes       = "container_network_receive_bytes_total"
	metricNetRxErrors      = "container_network_receive_errors_total"
	metricNetTxBytes       = "container_network_transmit_bytes_total"
	metricNetTxErrors      = "container_network_transmit_errors_total"
	metricNetRxPackets     = "container_network_receive_packets_total"
	metricNetRxDropped     = "container_network_receive_packets_dropped_total"
	metricNetTxPackets     = "container_network_transmit_packets_total"
	metricNetTxDropped     = "container_network_transmit_packets_dropped_total"
	metricMemoryMaxUsage   = "container_memory_max_usage_bytes"
	metricMemoryFailcnt    = "container_memory_failcnt"
	metricMemoryMapped     = "container_memory_mapped_file"
	metricMemoryFailures   = "container_memory_failures_total"
	metricMemoryEventsHigh = "container_memory_events_high_total"
	metricMemoryEventsMax  = "container_memory_events_max_total"
	metricSpecCPUPeriod    = "container_spec_cpu_period"
	metricSpecCPUQuota     = "container_spec_cpu_quota"
	metricSpecCPUShares    = "container_spec_cpu_shares"
	metricSpecMemLimit     = "container_spec_memory_limit_bytes"
	metricSpecMemReserve   = "container_spec_memory_reservation_limit_bytes"
	metricSpecMemSwap      = "container_spec_memory_swap_limit_bytes"
	metricStartTime        = "container_start_time_seconds"
	metricThreads          = "container_threads"
	metricThreadsMax       = "container_threads_max"
	metricFileDescriptors  = "container_file_descriptors"
	metricSockets          = "container_sockets"
	metricUlimitsSoft      = "container_ulimits_soft"
)

// Label keys of the metrics that have one more than the container's.
const (
	labelInterface   = "interface"
	labelDevice      = "device"
	labelFailureType = "failure_type"
	labelScope       = "scope"
	labelUlimit      = "ulimit"
)

const (
	metricCounter = runtimeapi.MetricType_COUNTER
	metricGauge   = runtimeapi.MetricType_GAUGE
)

// metricDesc is one metric: what ListMetricDescriptors says of it, and the
// type its values carry (the descriptor has no field for it).
type metricDesc struct {
	name string
	help string
	typ  runtimeapi.MetricType
	// extra are the label keys after the container labels
	// (pod, namespace, container, id, image).
	extra []string
}

// metricDescs is every metric Skiff emits; it is never written. A metric
// that is not here would be dropped by the kubelet, and a test checks
// that every emitted one is.
var metricDescs = []metricDesc{
	{metricCPUUsage, "Cumulative cpu time consumed in seconds.", metricCounter, nil},
	{metricCPUUser, "Cumulative user cpu time consumed in seconds.", metricCounter, nil},
	{metricCPUSystem, "Cumulative system cpu time consumed in seconds.", metricCounter, nil},
	{metricCFSPeriods, "Number of elapsed enforcement period intervals.", metricCounter, nil},
	{metricCFSThrottled, "Number of throttled period intervals.", metricCounter, nil},
	{metricCFSThrottledSecs, "Total time duration the container has been throttled.", metricCounter, nil},
	{metricMemoryUsage, "Current memory usage in bytes, including all memory regardless of when it was accessed.", metricGauge, nil},
	{metricMemoryWorkingSet, "Current working set in bytes.", metricGauge, nil},
	{metricMemoryRSS, "Size of RSS in bytes.", metricGauge, nil},
	{metricMemoryCache, "Number of bytes of page cache memory.", metricGauge, nil},
	{metricMemorySwap, "Container swap usage in bytes.", metricGauge, nil},
	{metricMemoryInactive, "Amount of inactive cache memory bytes, for the container, in file on disk.", metricGauge, nil},
	{metricOOMEvents, "Count of out of memory events observed for the container.", metricCounter, nil},
	{metricProcesses, "Number of processes running inside the container.", metricGauge, nil},
	{metricFsUsage, "Number of bytes that are consumed by the container on this filesystem.", metricGauge, []string{labelDevice}},
	{metricLastSeen, "Last time a container was seen by the exporter.", metricGauge, nil},
	{metricNetRxBytes, "Cumulative count of bytes received.", metricCounter, []string{labelInterface}},
	{metricNetRxErrors, "Cumulative count of errors encountered while receiving.", metricCounter, []string{labelInterface}},
	{metricNetTxBytes, "Cumulative count of bytes transmitted.", metricCounter, []string{labelInterface}},
	{metricNetTxErrors, "Cumulative count of errors encountered while transmitting.", metricCounter, []string{labelInterface}},
	{metricNetRxPackets, "Cumulative count of packets received", metricCounter, []string{labelInterface}},
	{metricNetRxDropped, "Cumulative count of packets dropped while receiving", metricCounter, []string{labelInterface}},
	{metricNetTxPackets, "Cumulative count of packets transmitted", metricCounter, []string{labelInterface}},
	{metricNetTxDropped, "Cumulative count of packets dropped while transmitting", metricCounter, []string{labelInterface}},
	{metricMemoryMaxUsage, "Maximum memory usage recorded in bytes", metricGauge, nil},
	{metricMemoryFailcnt, "Number of memory usage hits limits", metricCounter, nil},
	{metricMemoryMapped, "Size of memory mapped files in bytes.", metricGauge, nil},
	{metricMemoryFailures, "Cumulative count of memory allocation failures.", metricCounter, []string{labelFailureType, labelScope}},
	{metricMemoryEventsHigh, "Cumulative count of memory.high throttle events for the container", metricCounter, nil},
	{metricMemoryEventsMax, "Cumulative count of memory.max limit hit events for the container", metricCounter, nil},
	{metricSpecCPUPeriod, "CPU period of the container.", metricGauge, nil},
	{metricSpecCPUQuota, "CPU quota of the container.", metricGauge, nil},
	{metricSpecCPUShares, "CPU share of the container.", metricGauge, nil},
	{metricSpecMemLimit, "Memory limit for the container.", metricGauge, nil},
	{metricSpecMemReserve, "Memory reservation limit for the container.", metricGauge, nil},
	{metricSpecMemSwap, "Memory swap limit for the container.", metricGauge, nil},
	{metricStartTime, "Start time of the container since unix epoch in seconds.", metricGauge, nil},
	{metricThreads, "Number of threads running inside the container", metricGauge, nil},
	{metricThreadsMax, "Maximum number of threads allowed inside the container, infinity if value is zero", metricGauge, nil},
	{metricFileDescriptors, "Number of open file descriptors for the container.", metricGauge, nil},
	{metricSockets, "Number of open sockets for the container.", metricGauge, nil},
	{metricUlimitsSoft, "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", metricGauge, []string{labelUlimit}},
}

// containerLabelKeys come first on every metric, in cAdvisor's order of
// the kubelet's labels; ListPodSandboxMetrics gives their values in the
// same order.
func containerLabelKeys() []string {
	return []string{"pod", "namespace", "container", "id", "image"}
}

// descOf finds a metric's entry; ok is false for a name Skiff does not
// describe.
func descOf(name string) (metricDesc, bool) {
	for _, d := range metricDescs {
		if d.name == name {
			return d, true
		}
	}
	return metricDesc{}, false
}

// ListMetricDescriptors describes every metric ListPodSandboxMetrics
// reports. The kubelet asks once, when it starts, and drops metrics it was
// not told of, so the list is fixed and does not depend on the pods.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	resp := &runtimeapi.ListMetricDescriptorsResponse{}
	for _, d := range metricDescs {
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{
			Name: d.name, Help: d.help, LabelKeys: append(containerLabelKeys(), d.extra...),
		})
	}
	return resp, nil
}
