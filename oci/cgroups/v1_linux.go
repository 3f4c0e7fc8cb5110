package cgroups

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
)

func (m *Manager) v1w(controller string) (writer, bool) {
	d, ok := m.v1[controller]
	return writer{l: m.layout, dir: d}, ok
}

func (m *Manager) setV1(r *specs.LinuxResources) error {
	if c := r.CPU; c != nil {
		if w, ok := m.v1w("cpu"); ok {
			if err := setCPUV1(w, c); err != nil {
				return err
			}
		}
		if c.Cpus != "" || c.Mems != "" {
			w, ok := m.v1w("cpuset")
			if !ok {
				return errdefs.FailedPrecondition("cpuset limits given but no cpuset hierarchy is mounted")
			}
			if c.Cpus != "" {
				if err := w.set("cpuset.cpus", c.Cpus); err != nil {
					return err
				}
			}
			if c.Mems != "" {
				if err := w.set("cpuset.mems", c.Mems); err != nil {
					return err
				}
			}
		}
	}
	if mem := r.Memory; mem != nil {
		w, ok := m.v1w("memory")
		if !ok {
			return errdefs.FailedPrecondition("memory limits given but no memory hierarchy is mounted")
		}
		if err := setMemoryV1(w, mem); err != nil {
			return err
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		w, ok := m.v1w("pids")
		if !ok {
			return errdefs.FailedPrecondition("pids limit given but no pids hierarchy is mounted")
		}
		v := "max"
		if *p.Limit > 0 {
			v = itoa(*p.Limit)
		}
		if err := w.set("pids.max", v); err != nil {
			return err
		}
	}
	if b := r.BlockIO; b != nil {
		if w, ok := m.v1w("blkio"); ok {
			if err := setBlkioV1(w, b); err != nil {
				return err
			}
		}
	}
	if w, ok := m.v1w("hugetlb"); ok {
		for _, h := range r.HugepageLimits {
			if err := w.set("hugetlb."+h.Pagesize+".limit_in_bytes", utoa(h.Limit)); err != nil {
				return err
			}
			if f := "hugetlb." + h.Pagesize + ".rsvd.limit_in_bytes"; w.has(f) {
				if err := w.set(f, utoa(h.Limit)); err != nil {
					return err
				}
			}
		}
	}
	if n := r.Network; n != nil {
		if w, ok := m.v1w("net_cls"); ok && n.ClassID != nil {
			if err := w.set("net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10)); err != nil {
				return err
			}
		}
		if w, ok := m.v1w("net_prio"); ok {
			for _, p := range n.Priorities {
				if err := w.set("net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority)); err != nil {
					return err
				}
			}
		}
	}
	if w, ok := m.v1w("rdma"); ok {
		if err := setRdma(w, r.Rdma); err != nil {
			return err
		}
	}
	if len(r.Devices) > 0 {
		w, ok := m.v1w("devices")
		if !ok {
			return errdefs.FailedPrecondition("device rules given but no devices hierarchy is mounted")
		}
		for _, d := range r.Devices {
			file := "devices.deny"
			if d.Allow {
				file = "devices.allow"
			}
			if err := w.set(file, DeviceRule(d)); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeviceRule formats an OCI device cgroup entry the way v1 devices.allow
// and devices.deny read it: "c 1:3 rwm", with "*" for wildcards.
func DeviceRule(d specs.LinuxDeviceCgroup) string {
	typ := d.Type
	if typ == "" {
		typ = "a"
	}
	num := func(p *int64) string {
		if p == nil || *p < 0 {
			return "*"
		}
		return itoa(*p)
	}
	access := d.Access
	if access == "" {
		access = "rwm"
	}
	return fmt.Sprintf("%s %s:%s %s", typ, num(d.Major), num(d.Minor), access)
}

func setCPUV1(w writer, c *specs.LinuxCPU) error {
	if c.Quota != nil && *c.Quota == 0 {
		// Zero means unset (the kernel would refuse it), as in runc.
		cc := *c
		cc.Quota = nil
		c = &cc
	}
	if c.Shares != nil && *c.Shares != 0 {
		if err := w.set("cpu.shares", utoa(*c.Shares)); err != nil {
			return err
		}
	}
	// The kernel validates quota against period, so a new period can be
	// refused until the new quota is in; try the other order on EINVAL.
	if c.Period != nil && *c.Period != 0 {
		perr := w.set("cpu.cfs_period_us", utoa(*c.Period))
		if c.Quota != nil {
			if err := w.set("cpu.cfs_quota_us", itoa(*c.Quota)); err != nil {
				return err
			}
		}
		if perr != nil {
			if err := w.set("cpu.cfs_period_us", utoa(*c.Period)); err != nil {
				return err
			}
		}
	} else if c.Quota != nil {
		if err := w.set("cpu.cfs_quota_us", itoa(*c.Quota)); err != nil {
			return err
		}
	}
	if c.Burst != nil && w.has("cpu.cfs_burst_us") {
		if err := w.set("cpu.cfs_burst_us", utoa(*c.Burst)); err != nil {
			return err
		}
	}
	if c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
		if err := w.set("cpu.rt_period_us", utoa(*c.RealtimePeriod)); err != nil {
			return err
		}
	}
	if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 {
		if err := w.set("cpu.rt_runtime_us", itoa(*c.RealtimeRuntime)); err != nil {
			return err
		}
	}
	if c.Idle != nil && w.has("cpu.idle") {
		if err := w.set("cpu.idle", itoa(*c.Idle)); err != nil {
			return err
		}
	}
	return nil
}

// setMemoryV1 writes memory and memory+swap limits. The kernel requires
// memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every moment, so
// when raising limits memsw goes first, when lowering memory goes first.
func setMemoryV1(w writer, mem *specs.LinuxMemory) error {
	limit, swap := mem.Limit, mem.Swap
	if limit != nil && *limit == -1 && swap == nil {
		// "No limit" lifts the memory+swap cap too.
		swap = limit
	}
	if swap != nil && *swap == 0 {
		swap = nil
	}
	if swap != nil && *swap > 0 && limit != nil && *limit > 0 && *swap < *limit {
		return errdefs.InvalidArgument("memory+swap limit %d is below memory limit %d", *swap, *limit)
	}
	hasMemsw := w.has("memory.memsw.limit_in_bytes")
	if swap != nil && !hasMemsw {
		// Without swap accounting, memory+swap == memory (what kubelet
		// sends when swap is off) or unlimited is what the host does anyway.
		if *swap != -1 && (limit == nil || *swap != *limit) {
			return errdefs.FailedPrecondition("memory+swap limit %d needs swap accounting (memory.memsw.*), which the kernel lacks", *swap)
		}
		swap = nil
	}
	switch {
	case limit != nil && swap != nil:
		if err := w.set("memory.limit_in_bytes", itoa(*limit)); err != nil {
			// Raising: memory+swap must grow first.
			if err2 := w.set("memory.memsw.limit_in_bytes", itoa(*swap)); err2 != nil {
				return errors.Join(err, err2)
			}
			if err := w.set("memory.limit_in_bytes", itoa(*limit)); err != nil {
				return err
			}
		} else if err := w.set("memory.memsw.limit_in_bytes", itoa(*swap)); err != nil {
			return err
		}
	case limit != nil:
		if err := w.set("memory.limit_in_bytes", itoa(*limit)); err != nil {
			return err
		}
	case swap != nil:
		if err := w.set("memory.memsw.limit_in_bytes", itoa(*swap)); err != nil {
			return err
		}
	}
	if mem.Reservation != nil && *mem.Reservation != 0 {
		if err := w.set("memory.soft_limit_in_bytes", itoa(*mem.Reservation)); err != nil {
			return err
		}
	}
	if mem.KernelTCP != nil && *mem.KernelTCP != 0 && w.has("memory.kmem.tcp.limit_in_bytes") {
		if err := w.set("memory.kmem.tcp.limit_in_bytes", itoa(*mem.KernelTCP)); err != nil {
			return err
		}
	}
	if mem.Swappiness != nil && *mem.Swappiness <= 100 {
		if err := w.set("memory.swappiness", utoa(*mem.Swappiness)); err != nil {
			return err
		}
	}
	if mem.DisableOOMKiller != nil && *mem.DisableOOMKiller {
		if err := w.set("memory.oom_control", "1"); err != nil {
			return err
		}
	}
	return nil
}

func setBlkioV1(w writer, b *specs.LinuxBlockIO) error {
	// CFQ is gone from current kernels; BFQ exposes blkio.bfq.weight.
	weightFile := "blkio.weight"
	if !w.has(weightFile) && w.has("blkio.bfq.weight") {
		weightFile = "blkio.bfq.weight"
	}
	if b.Weight != nil && *b.Weight != 0 {
		if err := w.set(weightFile, utoa(uint64(*b.Weight))); err != nil {
			return err
		}
	}
	if b.LeafWeight != nil && *b.LeafWeight != 0 && w.has("blkio.leaf_weight") {
		if err := w.set("blkio.leaf_weight", utoa(uint64(*b.LeafWeight))); err != nil {
			return err
		}
	}
	for _, d := range b.WeightDevice {
		if d.Weight != nil {
			if err := w.set(weightFile+"_device", fmt.Sprintf("%s %d", devNum(d.LinuxBlockIODevice), *d.Weight)); err != nil {
				return err
			}
		}
		if d.LeafWeight != nil && w.has("blkio.leaf_weight_device") {
			if err := w.set("blkio.leaf_weight_device", fmt.Sprintf("%s %d", devNum(d.LinuxBlockIODevice), *d.LeafWeight)); err != nil {
				return err
			}
		}
	}
	for file, devs := range map[string][]specs.LinuxThrottleDevice{
		"blkio.throttle.read_bps_device":   b.ThrottleReadBpsDevice,
		"blkio.throttle.write_bps_device":  b.ThrottleWriteBpsDevice,
		"blkio.throttle.read_iops_device":  b.ThrottleReadIOPSDevice,
		"blkio.throttle.write_iops_device": b.ThrottleWriteIOPSDevice,
	} {
		for _, d := range devs {
			if err := w.set(file, fmt.Sprintf("%s %d", devNum(d.LinuxBlockIODevice), d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
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
		s.Limits.CPUShares, err = m.readUint(d, "cpu.shares")
		errs = append(errs, optional(err))
		s.Limits.CPUPeriod, err = m.readUint(d, "cpu.cfs_period_us")
		errs = append(errs, optional(err))
		s.Limits.CPUQuota, err = m.readUint(d, "cpu.cfs_quota_us")
		errs = append(errs, optional(err))
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
		s.Memory.MappedFile = kv["total_mapped_file"]
		s.Memory.WorkingSet = workingSet(s.Memory.Usage, s.Memory.InactiveFile)
		oc, err := m.readKeyed(d, "memory.oom_control")
		errs = append(errs, err)
		s.Memory.OOMKills = oc["oom_kill"]
		s.Memory.MaxUsage, err = m.readUint(d, "memory.max_usage_in_bytes")
		errs = append(errs, optional(err))
		s.Memory.Failcnt, err = m.readUint(d, "memory.failcnt")
		errs = append(errs, optional(err))
		s.Limits.MemoryReservation, err = m.readUint(d, "memory.soft_limit_in_bytes")
		errs = append(errs, optional(err))
		// Without swap accounting the file is not there: no swap limit.
		s.Limits.SwapLimit, err = m.readUint(d, "memory.memsw.limit_in_bytes")
		errs = append(errs, optional(err))
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

// initCpuset fills empty cpuset.cpus and cpuset.mems on every level from the
// parent: a v1 cpuset cgroup starts empty and refuses tasks until both are
// set (unless cgroup.clone_children was set on the parent).
func (l *Layout) initCpuset(mnt, path string) error {
	parent := mnt
	for part := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		cur := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := l.read(filepath.Join(cur, f))
			if err != nil {
				return err
			}
			if strings.TrimSpace(v) != "" {
				continue
			}
			pv, err := l.read(filepath.Join(parent, f))
			if err != nil {
				return err
			}
			if err := l.write(filepath.Join(cur, f), strings.TrimSpace(pv)); err != nil {
				return err
			}
		}
		parent = cur
	}
	return nil
}

func (m *Manager) freezeV1(ctx context.Context, d string) error {
	state := filepath.Join(d, "freezer.state")
	for i := 0; ; i++ {
		// Writing FROZEN again kicks tasks that were in the middle of a
		// fork or vfork when the first write happened.
		if i%50 == 0 {
			if err := m.layout.write(state, "FROZEN"); err != nil {
				return fmt.Errorf("cgroup %q: freeze: %w", m.path, err)
			}
		}
		s, err := m.layout.read(state)
		if err != nil {
			return fmt.Errorf("cgroup %q: freeze: %w", m.path, err)
		}
		if strings.TrimSpace(s) == "FROZEN" {
			return nil
		}
		if err := sleep(ctx, pollInterval); err != nil {
			_ = m.layout.write(state, "THAWED")
			return fmt.Errorf("cgroup %q: freeze: %w", m.path, err)
		}
	}
}
