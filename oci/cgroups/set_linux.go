package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// Set applies OCI resource limits. Fields left nil are not touched, so Set
// also serves UpdateContainerResources. Hugetlb limits are skipped when the
// hugetlb controller is not attached to the hierarchy that carries the other
// controllers (on hybrid hosts it is often only on the idle cgroup2 mount).
func (m *Manager) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	var err error
	if m.layout.Mode == Unified {
		err = m.setV2(r)
	} else {
		if len(r.Unified) > 0 {
			return errdefs.InvalidArgument("cgroup %q: unified resources need cgroup v2, host is %s", m.path, m.layout.Mode)
		}
		err = m.setV1(r)
	}
	if err != nil {
		return fmt.Errorf("cgroup %q: set resources: %w", m.path, err)
	}
	return nil
}

// writer collects the directory and layout for terse file writes.
type writer struct {
	l   *Layout
	dir string
}

func (w writer) set(file, value string) error { return w.l.write(filepath.Join(w.dir, file), value) }
func (w writer) has(file string) bool         { return w.l.has(filepath.Join(w.dir, file)) }

func itoa(v int64) string  { return strconv.FormatInt(v, 10) }
func utoa(v uint64) string { return strconv.FormatUint(v, 10) }

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
			if f := "hugetlb." + h.Pagesize + ".rsvd.limit_in_bytes"; w.has(f) && !w.l.fake {
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

func devNum(d specs.LinuxBlockIODevice) string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

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

func setRdma(w writer, rdma map[string]specs.LinuxRdma) error {
	for dev, l := range rdma {
		var parts []string
		if l.HcaHandles != nil {
			parts = append(parts, fmt.Sprintf("hca_handle=%d", *l.HcaHandles))
		}
		if l.HcaObjects != nil {
			parts = append(parts, fmt.Sprintf("hca_object=%d", *l.HcaObjects))
		}
		if len(parts) == 0 {
			continue
		}
		if err := w.set("rdma.max", dev+" "+strings.Join(parts, " ")); err != nil {
			return err
		}
	}
	return nil
}

// setV2 writes the unified hierarchy. Device rules become an eBPF program
// attached to the cgroup (see devices_linux.go).
func (m *Manager) setV2(r *specs.LinuxResources) error {
	w := writer{l: m.layout, dir: m.unified}
	if len(r.Devices) > 0 {
		prog, err := DeviceProgram(r.Devices)
		if err != nil {
			return err
		}
		// A fake tree cannot hold a BPF program; its tests check the
		// program generation only.
		if !m.layout.fake {
			if err := attachDeviceProgram(m.unified, prog); err != nil {
				return err
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			if err := w.set("cpu.weight", utoa(SharesToWeight(*c.Shares))); err != nil {
				return err
			}
		}
		if v := CPUMax(c.Quota, c.Period); v != "" {
			if err := w.set("cpu.max", v); err != nil {
				return err
			}
		}
		if c.Burst != nil {
			if err := w.set("cpu.max.burst", utoa(*c.Burst)); err != nil {
				return err
			}
		}
		if c.Idle != nil {
			if err := w.set("cpu.idle", itoa(*c.Idle)); err != nil {
				return err
			}
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
	if mem := r.Memory; mem != nil {
		swap, err := SwapV2(mem.Limit, mem.Swap)
		if err != nil {
			return err
		}
		if swap != "" {
			if w.has("memory.swap.max") {
				if err := w.set("memory.swap.max", swap); err != nil {
					return err
				}
			} else if swap != "0" && swap != "max" {
				return errdefs.FailedPrecondition("swap limit given but the kernel has no memory.swap.max")
			}
		}
		if mem.Limit != nil && *mem.Limit != 0 {
			if err := w.set("memory.max", limitString(*mem.Limit)); err != nil {
				return err
			}
		}
		if mem.Reservation != nil && *mem.Reservation != 0 {
			if err := w.set("memory.low", limitString(*mem.Reservation)); err != nil {
				return err
			}
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		v := "max"
		if *p.Limit > 0 {
			v = itoa(*p.Limit)
		}
		if err := w.set("pids.max", v); err != nil {
			return err
		}
	}
	if b := r.BlockIO; b != nil {
		if err := setIOV2(w, b); err != nil {
			return err
		}
	}
	if w.has("hugetlb." + firstPagesize(r.HugepageLimits) + ".max") {
		for _, h := range r.HugepageLimits {
			if err := w.set("hugetlb."+h.Pagesize+".max", utoa(h.Limit)); err != nil {
				return err
			}
			if f := "hugetlb." + h.Pagesize + ".rsvd.max"; !w.l.fake && w.has(f) {
				if err := w.set(f, utoa(h.Limit)); err != nil {
					return err
				}
			}
		}
	}
	if err := setRdma(w, r.Rdma); err != nil {
		return err
	}
	// The unified map is applied last so that it overrides the fields.
	for k, v := range r.Unified {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." || !strings.Contains(k, ".") {
			return errdefs.InvalidArgument("unified key %q is not a cgroup file name", k)
		}
		if err := w.set(k, v); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT) {
				return errdefs.InvalidArgument("unified key %q: no such cgroup file (controller not enabled?): %w", k, err)
			}
			return err
		}
	}
	return nil
}

func firstPagesize(h []specs.LinuxHugepageLimit) string {
	if len(h) == 0 {
		return "none"
	}
	return h[0].Pagesize
}

func setIOV2(w writer, b *specs.LinuxBlockIO) error {
	// With BFQ the weight lives in io.bfq.weight and uses the v1 scale.
	bfq := w.has("io.bfq.weight") && !w.l.fake
	if b.Weight != nil && *b.Weight != 0 {
		var err error
		if bfq {
			err = w.set("io.bfq.weight", utoa(uint64(*b.Weight)))
		} else {
			err = w.set("io.weight", "default "+utoa(BlkioWeightToIOWeight(uint64(*b.Weight))))
		}
		if err != nil {
			return err
		}
	}
	for _, d := range b.WeightDevice {
		if d.Weight == nil {
			continue
		}
		var err error
		if bfq {
			err = w.set("io.bfq.weight", fmt.Sprintf("%s %d", devNum(d.LinuxBlockIODevice), *d.Weight))
		} else {
			err = w.set("io.weight", fmt.Sprintf("%s %d", devNum(d.LinuxBlockIODevice), BlkioWeightToIOWeight(uint64(*d.Weight))))
		}
		if err != nil {
			return err
		}
	}
	for key, devs := range map[string][]specs.LinuxThrottleDevice{
		"rbps":  b.ThrottleReadBpsDevice,
		"wbps":  b.ThrottleWriteBpsDevice,
		"riops": b.ThrottleReadIOPSDevice,
		"wiops": b.ThrottleWriteIOPSDevice,
	} {
		for _, d := range devs {
			if err := w.set("io.max", fmt.Sprintf("%s %s=%d", devNum(d.LinuxBlockIODevice), key, d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
}
