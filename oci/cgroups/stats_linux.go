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
}

// PidsStats counts tasks.
type PidsStats struct {
	Current uint64
	Limit   uint64 // math.MaxUint64 when unlimited
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
	return s, nil
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

func (m *Manager) statsV1() (*Stats, error) {
	s := &Stats{}
	var errs []error
	if d, ok := m.v1["cpuacct"]; ok {
		var err error
		s.CPU.UsageNanos, err = m.readUint(d, "cpuacct.usage")
		errs = append(errs, optional(err))
		kv, err := m.readKeyed(d, "cpuacct.stat")
		errs = append(errs, optional(err))
		s.CPU.UserNanos = kv["user"] * tickNanos
		s.CPU.SystemNanos = kv["system"] * tickNanos
	}
	if d, ok := m.v1["cpu"]; ok {
		kv, err := m.readKeyed(d, "cpu.stat")
		errs = append(errs, optional(err))
		s.CPU.Periods = kv["nr_periods"]
		s.CPU.ThrottledPeriods = kv["nr_throttled"]
		s.CPU.ThrottledNanos = kv["throttled_time"]
	}
	if d, ok := m.v1["memory"]; ok {
		var err error
		s.Memory.Usage, err = m.readUint(d, "memory.usage_in_bytes")
		errs = append(errs, err)
		s.Memory.Limit, err = m.readUint(d, "memory.limit_in_bytes")
		errs = append(errs, err)
		if u, err := m.readUint(d, "memory.memsw.usage_in_bytes"); err == nil && u > s.Memory.Usage {
			s.Memory.Swap = u - s.Memory.Usage
		}
		kv, err := m.readKeyed(d, "memory.stat")
		errs = append(errs, err)
		// total_* include descendants, which is what a pod or container
		// cgroup with children should report.
		s.Memory.RSS = kv["total_rss"]
		s.Memory.Cache = kv["total_cache"]
		s.Memory.InactiveFile = kv["total_inactive_file"]
		s.Memory.PageFaults = kv["total_pgfault"]
		s.Memory.MajorPageFaults = kv["total_pgmajfault"]
		s.Memory.WorkingSet = workingSet(s.Memory.Usage, s.Memory.InactiveFile)
		oc, err := m.readKeyed(d, "memory.oom_control")
		errs = append(errs, err)
		s.Memory.OOMKills = oc["oom_kill"]
	}
	if d, ok := m.v1["pids"]; ok {
		var err error
		s.Pids.Current, err = m.readUint(d, "pids.current")
		errs = append(errs, err)
		s.Pids.Limit, err = m.readUint(d, "pids.max")
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

func (m *Manager) statsV2() (*Stats, error) {
	s := &Stats{}
	d := m.unified
	var errs []error
	// cpu.stat exists even without the cpu controller (usage only).
	kv, err := m.readKeyed(d, "cpu.stat")
	errs = append(errs, err)
	s.CPU.UsageNanos = kv["usage_usec"] * 1000
	s.CPU.UserNanos = kv["user_usec"] * 1000
	s.CPU.SystemNanos = kv["system_usec"] * 1000
	s.CPU.Periods = kv["nr_periods"]
	s.CPU.ThrottledPeriods = kv["nr_throttled"]
	s.CPU.ThrottledNanos = kv["throttled_usec"] * 1000

	if exists(filepath.Join(d, "memory.current")) {
		s.Memory.Usage, err = m.readUint(d, "memory.current")
		errs = append(errs, err)
		s.Memory.Limit, err = m.readUint(d, "memory.max")
		errs = append(errs, err)
		s.Memory.Swap, err = m.readUint(d, "memory.swap.current")
		errs = append(errs, optional(err))
		kv, err := m.readKeyed(d, "memory.stat")
		errs = append(errs, err)
		s.Memory.RSS = kv["anon"]
		s.Memory.Cache = kv["file"]
		s.Memory.InactiveFile = kv["inactive_file"]
		s.Memory.PageFaults = kv["pgfault"]
		s.Memory.MajorPageFaults = kv["pgmajfault"]
		s.Memory.WorkingSet = workingSet(s.Memory.Usage, s.Memory.InactiveFile)
		ev, err := m.readKeyed(d, "memory.events")
		errs = append(errs, err)
		s.Memory.OOMKills = ev["oom_kill"]
	}
	if exists(filepath.Join(d, "pids.current")) {
		s.Pids.Current, err = m.readUint(d, "pids.current")
		errs = append(errs, err)
		s.Pids.Limit, err = m.readUint(d, "pids.max")
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
