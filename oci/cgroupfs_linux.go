package oci

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/oci/cgroups"
)

// NewCgroupfs returns the CgroupFactory backed by package oci/cgroups
// (cgroupfs driver, v1, hybrid and v2), which reads the host's cgroup
// layout once, when first needed (see cgroups.Host).
func NewCgroupfs() CgroupFactory {
	host := &cgroups.Host{}
	return func(path string, res *specs.LinuxResources) (CgroupManager, error) {
		l, err := host.Layout()
		if err != nil {
			return nil, err
		}
		if res == nil {
			m, err := l.Load(path)
			if err != nil {
				return nil, err
			}
			return m, nil
		}
		m, err := l.New(path)
		if err != nil {
			return nil, err
		}
		if err := m.Set(res); err != nil {
			m.Destroy(context.Background())
			return nil, err
		}
		return m, nil
	}
}
