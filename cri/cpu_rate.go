package cri

import (
	"sync"
)

// cpuRates turns cumulative CPU usage into a rate (nano cores): the kubelet
// reads a pod's UsageNanoCores from PodSandboxStats as it comes (it
// computes containers' itself), and metrics-server and the HPA show it.
// It keeps each pod's previous sample only: a cache of the last reading,
// not state of record, so a restarted daemon simply reports no rate on its
// first reading of a pod.
type cpuRates struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    int64 // Unix nanoseconds
	usage uint64
}

func newCPURates() *cpuRates { return &cpuRates{last: map[string]cpuSample{}} }

// rate records usage (cumulative nanoseconds of CPU) read at time at for
// key and returns the nano cores since the previous reading; ok is false
// for a first reading, a reading no newer than the last, or usage that went
// back (a cgroup was recreated).
func (r *cpuRates) rate(key string, at int64, usage uint64) (nanoCores uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, seen := r.last[key]
	if seen && at <= prev.at {
		return 0, false
	}
	r.last[key] = cpuSample{at: at, usage: usage}
	if !seen || usage < prev.usage {
		return 0, false
	}
	return uint64(float64(usage-prev.usage) / float64(at-prev.at) * 1e9), true
}

// forget drops key's sample (its pod is gone).
func (r *cpuRates) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, key)
}
