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

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
