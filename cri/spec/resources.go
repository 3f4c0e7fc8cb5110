package spec

import (
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

func setDevices(s *specs.Spec, devs []*runtimeapi.Device, privileged bool) error {
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		hostDevs, err := hostDevices("/dev")
		if err != nil {
			return err
		}
		s.Linux.Devices = append(s.Linux.Devices, hostDevs...)
	} else {
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, defaultDeviceRules...)
	}
	for _, d := range devs {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return errdefs.InvalidArgument("device %s: permissions %q must be made of r, w and m", d.HostPath, d.Permissions)
		}
		found, err := devicesAt(d.HostPath, d.ContainerPath)
		if err != nil {
			return err
		}
		for _, dev := range found {
			s.Linux.Devices = append(s.Linux.Devices, dev)
			maj, min := dev.Major, dev.Minor
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: &maj, Minor: &min, Access: perms,
			})
		}
	}
	return nil
}

func i64(v int64) *int64 { return &v }

// defaultDeviceRules allow the default devices the executor creates and
// mknod of any device (creating one is harmless without access to it).
var defaultDeviceRules = []specs.LinuxDeviceCgroup{
	{Allow: true, Type: "c", Major: i64(-1), Minor: i64(-1), Access: "m"},
	{Allow: true, Type: "b", Major: i64(-1), Minor: i64(-1), Access: "m"},
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},    // null
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},    // zero
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(7), Access: "rwm"},    // full
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},    // random
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},    // urandom
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},    // tty
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(1), Access: "rwm"},    // console
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"},    // ptmx
	{Allow: true, Type: "c", Major: i64(136), Minor: i64(-1), Access: "rwm"}, // pts
	{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "rwm"}, // tun
}

// Resources converts CRI resources for a cgroup update (UpdateContainerResources).
func Resources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	s := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	if err := setResources(s, r); err != nil {
		return nil, err
	}
	return s.Linux.Resources, nil
}

func setResources(s *specs.Spec, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	res := s.Linux.Resources
	cpu := &specs.LinuxCPU{}
	if r.CpuShares > 0 {
		v := uint64(r.CpuShares)
		cpu.Shares = &v
	}
	if r.CpuQuota > 0 {
		cpu.Quota = i64(r.CpuQuota)
	}
	if r.CpuPeriod > 0 {
		v := uint64(r.CpuPeriod)
		cpu.Period = &v
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if *cpu != (specs.LinuxCPU{}) {
		res.CPU = cpu
	}
	if r.MemoryLimitInBytes < 0 {
		return errdefs.InvalidArgument("memory limit %d is negative", r.MemoryLimitInBytes)
	}
	if r.MemoryLimitInBytes > 0 {
		res.Memory = &specs.LinuxMemory{Limit: i64(r.MemoryLimitInBytes)}
		if r.MemorySwapLimitInBytes > 0 {
			if r.MemorySwapLimitInBytes < r.MemoryLimitInBytes {
				return errdefs.InvalidArgument("memory+swap limit %d is below the memory limit %d", r.MemorySwapLimitInBytes, r.MemoryLimitInBytes)
			}
			res.Memory.Swap = i64(r.MemorySwapLimitInBytes)
		}
	}
	for _, h := range r.HugepageLimits {
		res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		res.Unified = r.Unified
	}
	if r.OomScoreAdj != 0 {
		if r.OomScoreAdj < -1000 || r.OomScoreAdj > 1000 {
			return errdefs.InvalidArgument("oom_score_adj %d is outside [-1000, 1000]", r.OomScoreAdj)
		}
		v := int(r.OomScoreAdj)
		s.Process.OOMScoreAdj = &v
	}
	return nil
}
