package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodSandboxMetrics: a container that holds 64 MiB in a tmpfs file
// (charged to its memory cgroup as shared memory, which stays in the
// working set: it is not file cache that can be dropped) shows at least
// 64 MiB of container_memory_working_set_bytes in ListPodSandboxMetrics,
// and after the host fetched a page from it, the pod shows eth0's
// receive and transmit counters; every metric is one ListMetricDescriptors
// describes, with as many label values as keys.
func TestPodSandboxMetrics(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "metrics")
	const size = 64 << 20
	// httpd starts only once the file is written, so a served page means
	// the memory is held.
	ctr := d.runContainer(t, podID, podCfg, "mem", "sh", "-c",
		fmt.Sprintf("mkdir -p /www && echo hello > /www/index.html && head -c %d /dev/zero > /dev/shm/fill && exec httpd -f -p 0.0.0.0:80 -h /www", size))
	d.waitState(t, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	pst, err := d.rt.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip := pst.GetStatus().GetNetwork().GetIp()
	if _, err := httpGetRetry("http://"+ip+":80/index.html", 60*time.Second); err != nil {
		t.Fatalf("GET from the pod at %s: %v", ip, err)
	}

	descs, err := d.rt.ListMetricDescriptors(ctxT(t, 30*time.Second), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatalf("ListMetricDescriptors: %v", err)
	}
	keys := map[string][]string{}
	for _, desc := range descs.GetDescriptors() {
		keys[desc.GetName()] = desc.GetLabelKeys()
	}
	resp, err := d.rt.ListPodSandboxMetrics(ctxT(t, 30*time.Second), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v", err)
	}
	var pm *runtimeapi.PodSandboxMetrics
	for _, p := range resp.GetPodMetrics() {
		if p.GetPodSandboxId() == podID {
			pm = p
		}
	}
	if pm == nil {
		t.Fatalf("ListPodSandboxMetrics lacks pod %s: %v", podID, resp)
	}
	check := func(m *runtimeapi.Metric) {
		k, ok := keys[m.GetName()]
		if !ok {
			t.Errorf("metric %s not described", m.GetName())
		} else if len(k) != len(m.GetLabelValues()) {
			t.Errorf("metric %s: label values %q for keys %q", m.GetName(), m.GetLabelValues(), k)
		}
	}

	net := map[string]uint64{}
	for _, m := range pm.GetMetrics() {
		check(m)
		if v := m.GetLabelValues(); len(v) == 6 {
			net[m.GetName()+"/"+v[5]] = m.GetValue().GetValue()
		}
	}
	t.Logf("pod network metrics: %v", net)
	if net["container_network_receive_bytes_total/eth0"] == 0 || net["container_network_transmit_bytes_total/eth0"] == 0 {
		t.Errorf("eth0 rx/tx metrics %v, want both non-zero after a GET", net)
	}
	if _, ok := net["container_network_receive_bytes_total/lo"]; ok {
		t.Errorf("network metrics include lo: %v", net)
	}

	if net["container_network_receive_packets_total/eth0"] == 0 || net["container_network_transmit_packets_total/eth0"] == 0 {
		t.Errorf("eth0 packet metrics %v, want both non-zero after a GET", net)
	}

	var ws, procs uint64
	// The other series, by name (and extra label values).
	series := map[string]uint64{}
	found := false
	for _, c := range pm.GetContainerMetrics() {
		for _, m := range c.GetMetrics() {
			check(m)
			if c.GetContainerId() != ctr {
				continue
			}
			found = true
			if v := m.GetLabelValues(); len(v) < 5 || v[0] != "metrics" || v[1] != "e2e" || v[2] != "mem" || v[3] != ctr {
				t.Errorf("%s labels %q", m.GetName(), v)
			}
			series[strings.Join(append([]string{m.GetName()}, m.GetLabelValues()[5:]...), "/")] = m.GetValue().GetValue()
			switch m.GetName() {
			case "container_memory_working_set_bytes":
				ws = m.GetValue().GetValue()
			case "container_processes":
				procs = m.GetValue().GetValue()
			}
		}
	}
	if !found {
		t.Fatalf("no metrics for container %s: %v", ctr, pm)
	}
	t.Logf("container_memory_working_set_bytes %d (%.1f MiB), container_processes %d", ws, float64(ws)/(1<<20), procs)
	if ws < size {
		t.Errorf("working set %d bytes, want at least %d", ws, size)
	}
	if procs != 1 {
		t.Errorf("container_processes = %d, want 1 (httpd)", procs)
	}
	t.Logf("other series: %v", series)
	// httpd: one thread, its listening socket among its descriptors, the
	// soft open-files limit it inherited; its memory peaked at the file.
	for name, ok := range map[string]func(uint64) bool{
		"container_threads":                                 func(v uint64) bool { return v == 1 },
		"container_file_descriptors":                        func(v uint64) bool { return v >= 4 },
		"container_sockets":                                 func(v uint64) bool { return v >= 1 },
		"container_ulimits_soft/max_open_files":             func(v uint64) bool { return v > 0 },
		"container_memory_max_usage_bytes":                  func(v uint64) bool { return v >= size },
		"container_spec_cpu_period":                         func(v uint64) bool { return v == 100000 },
		"container_spec_cpu_shares":                         func(v uint64) bool { return v >= 2 },
		"container_memory_failures_total/pgfault/container": func(v uint64) bool { return v > 0 },
		"container_start_time_seconds": func(v uint64) bool {
			return v > uint64(time.Now().Add(-10*time.Minute).Unix()) && v <= uint64(time.Now().Unix())
		},
	} {
		v, reported := series[name]
		if !reported || !ok(v) {
			t.Errorf("%s = %d (reported %v)", name, v, reported)
		}
	}

	// On this hybrid host every cgroup has its cgroup2 pressure files:
	// ContainerStats carries PSI, as the kubelet's KubeletPSI reads it.
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil {
		cs, err := d.rt.ContainerStats(ctxT(t, 30*time.Second), &runtimeapi.ContainerStatsRequest{ContainerId: ctr})
		if err != nil {
			t.Fatal(err)
		}
		if cs.GetStats().GetCpu().GetPsi() == nil || cs.GetStats().GetMemory().GetPsi() == nil || cs.GetStats().GetIo().GetPsi() == nil {
			t.Errorf("ContainerStats without PSI: cpu %v, memory %v, io %v", cs.GetStats().GetCpu(), cs.GetStats().GetMemory(), cs.GetStats().GetIo())
		}
	}
}
