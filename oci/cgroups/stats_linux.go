package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// Stats is what the CRI stats calls and the OOM detection need.
type Stats struct {
	CPU    CPUStats
	Memory MemoryStats
	Pids   PidsStats
	// Limits are the limits in force as the cgroup files hold them, what
	// cAdvisor reports as the container's spec.
	Limits Limits
	// PSI is the cgroup's pressure stall information, from its cgroup2
	// directory (on a hybrid host too: every cgroup2 cgroup has it, with
	// or without controllers); nil when there is none (no cgroup2 mount,
	// or a kernel without PSI).
	PSI *PSI
}

// PSI is the pressure stall information of CPU, memory and I/O.
type PSI struct {
	CPU, Memory, IO Pressure
}

// Limits are the cgroup's configured limits. An unlimited value is
// math.MaxUint64; a controller that is not mounted leaves its fields zero.
type Limits struct {
	// CPUShares is cpu.shares, or on cgroup v2 cpu.weight converted back
	// to shares (WeightToShares).
	CPUShares uint64
	// CPUPeriod and CPUQuota are the CFS period and quota in
	// microseconds.
	CPUPeriod, CPUQuota uint64
	// MemoryReservation is the soft limit: memory.soft_limit_in_bytes,
	// on v2 memory.low.
	MemoryReservation uint64
	// SwapLimit is memory.memsw.limit_in_bytes (memory plus swap) on v1,
	// memory.swap.max (swap alone) on v2; zero when the kernel accounts
	// no swap.
	SwapLimit uint64
}

// CPUStats are cumulative since the cgroup was created.
type CPUStats struct {
	UsageNanos       uint64
	UserNanos        uint64
	SystemNanos      uint64
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledNanos   uint64
}

// MemoryStats in bytes, except the counters.
type MemoryStats struct {
	Usage uint64
	// WorkingSet is usage minus inactive file cache, the figure kubelet
	// and cAdvisor evict on.
	WorkingSet   uint64
	RSS          uint64 // anonymous memory
	Cache        uint64 // page cache
	InactiveFile uint64
	Swap         uint64
	// Limit is math.MaxUint64 (or the v1 "unlimited" page-rounded maximum)
	// when unlimited.
	Limit           uint64
	PageFaults      uint64
	MajorPageFaults uint64
	OOMKills        uint64
	// MaxUsage is the highest usage recorded (v1 max_usage_in_bytes, v2
	// memory.peak; zero on a v2 kernel without it).
	MaxUsage uint64
	// Failcnt counts the times usage hit the limit (v1 memory.failcnt,
	// v2 the "max" event).
	Failcnt uint64
	// MappedFile is page cache mapped into processes.
	MappedFile uint64
	// Events are v2's memory.events counters; nil on v1, which has none.
	Events *MemoryEvents
}

// MemoryEvents are the cgroup v2 memory.events counters cAdvisor reports.
type MemoryEvents struct {
	High, Max uint64
}

// PidsStats counts tasks.
type PidsStats struct {
	Current uint64
	Limit   uint64 // math.MaxUint64 when unlimited
}

// WorkingSet is the memory the cgroup holds that the kernel cannot simply
// drop: usage less inactive page cache (MemoryStats.WorkingSet).
func (m *Manager) WorkingSet() (uint64, error) {
	st, err := m.Stats()
	if err != nil {
		return 0, err
	}
	return st.Memory.WorkingSet, nil
}

// Stats reads the cgroup's usage counters. Controllers that are not
// mounted leave their section zero.
func (m *Manager) Stats() (*Stats, error) {
	var s *Stats
	var err error
	if m.layout.Mode == Unified {
		s, err = m.statsV2()
	} else {
		s, err = m.statsV1()
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup %q: stats: %w", m.path, err)
	}
	if s.PSI, err = m.psi(); err != nil {
		return nil, fmt.Errorf("cgroup %q: stats: %w", m.path, err)
	}
	return s, nil
}

// psi reads the three pressure files of the cgroup2 directory.
func (m *Manager) psi() (*PSI, error) {
	d := m.unified
	if d == "" || !m.layout.has(filepath.Join(d, "cpu.pressure")) {
		return nil, nil
	}
	out := &PSI{}
	for _, f := range []struct {
		name string
		p    *Pressure
	}{{"cpu.pressure", &out.CPU}, {"memory.pressure", &out.Memory}, {"io.pressure", &out.IO}} {
		v, err := m.layout.read(filepath.Join(d, f.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if *f.p, err = ParsePressure(v); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(d, f.name), err)
		}
	}
	return out, nil
}

// tickNanos converts cpuacct.stat's USER_HZ ticks (100 per second on every
// architecture Skiff runs on) to nanoseconds.
const tickNanos = 10_000_000

func (m *Manager) readUint(dir, file string) (uint64, error) {
	v, err := m.layout.read(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	return ParseUint(v)
}

func (m *Manager) readKeyed(dir, file string) (map[string]uint64, error) {
	v, err := m.layout.read(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	kv, err := ParseFlatKeyed(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, file), err)
	}
	return kv, nil
}

// optional drops "file does not exist" so that counters an older kernel
// lacks stay zero.
func optional(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
