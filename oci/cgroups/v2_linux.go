package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

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
		if err := m.layout.fsys().attachDevices(m.unified, prog); err != nil {
			return err
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
			if f := "hugetlb." + h.Pagesize + ".rsvd.max"; w.has(f) {
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
	bfq := w.has("io.bfq.weight")
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
	if exists(filepath.Join(d, "cpu.max")) {
		w, err := m.readUint(d, "cpu.weight")
		errs = append(errs, optional(err))
		s.Limits.CPUShares = WeightToShares(w)
		v, err := m.layout.read(filepath.Join(d, "cpu.max"))
		errs = append(errs, err)
		if quota, period, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
			s.Limits.CPUQuota, err = ParseUint(quota)
			errs = append(errs, err)
			s.Limits.CPUPeriod, err = ParseUint(period)
			errs = append(errs, err)
		}
	}

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
		s.Memory.MappedFile = kv["file_mapped"]
		s.Memory.WorkingSet = workingSet(s.Memory.Usage, s.Memory.InactiveFile)
		ev, err := m.readKeyed(d, "memory.events")
		errs = append(errs, err)
		s.Memory.OOMKills = ev["oom_kill"]
		s.Memory.Failcnt = ev["max"]
		s.Memory.Events = &MemoryEvents{High: ev["high"], Max: ev["max"]}
		s.Memory.MaxUsage, err = m.readUint(d, "memory.peak")
		errs = append(errs, optional(err))
		s.Limits.MemoryReservation, err = m.readUint(d, "memory.low")
		errs = append(errs, optional(err))
		s.Limits.SwapLimit, err = m.readUint(d, "memory.swap.max")
		errs = append(errs, optional(err))
	}
	if exists(filepath.Join(d, "pids.current")) {
		s.Pids.Current, err = m.readUint(d, "pids.current")
		errs = append(errs, err)
		s.Pids.Limit, err = m.readUint(d, "pids.max")
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// v2Controllers are the controllers Skiff enables for its cgroups on a
// unified host when the parent offers them.
var v2Controllers = []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}

// enableControllers turns on, from the root down to the cgroup's parent,
// every wanted controller the level offers, so the leaf gets the interface
// files. Controllers the kernel refuses one by one are skipped: Set reports
// the missing file when a limit actually needs it.
func (l *Layout) enableControllers(path string) error {
	cur := l.Unified
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := range parts {
		avail, err := l.read(filepath.Join(cur, "cgroup.controllers"))
		if err != nil {
			return err
		}
		have := strings.Fields(avail)
		enabled, _ := l.read(filepath.Join(cur, "cgroup.subtree_control"))
		on := strings.Fields(enabled)
		var want []string
		for _, c := range v2Controllers {
			if slices.Contains(have, c) && !slices.Contains(on, c) {
				want = append(want, "+"+c)
			}
		}
		for _, w := range want {
			_ = l.write(filepath.Join(cur, "cgroup.subtree_control"), w)
		}
		cur = filepath.Join(cur, parts[i])
	}
	return nil
}

func (m *Manager) freezeV2(ctx context.Context, d string) error {
	if err := m.layout.write(filepath.Join(d, "cgroup.freeze"), "1"); err != nil {
		return fmt.Errorf("cgroup %q: freeze: %w", m.path, err)
	}
	for {
		ev, err := m.layout.read(filepath.Join(d, "cgroup.events"))
		if err != nil {
			return fmt.Errorf("cgroup %q: freeze: %w", m.path, err)
		}
		kv, err := ParseFlatKeyed(ev)
		if err != nil {
			return fmt.Errorf("cgroup %q: cgroup.events: %w", m.path, err)
		}
		if kv["frozen"] == 1 {
			return nil
		}
		if err := sleep(ctx, pollInterval); err != nil {
			_ = m.layout.write(filepath.Join(d, "cgroup.freeze"), "0")
			return fmt.Errorf("cgroup %q: freeze: %w", m.path, err)
		}
	}
}
