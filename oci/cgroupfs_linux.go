package oci

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/oci/cgroups"
)

// Cgroupfs is the CgroupFactory backed by package oci/cgroups (cgroupfs
// driver, v1, hybrid and v2).
func Cgroupfs(path string, res *specs.LinuxResources) (CgroupManager, error) {
	if res == nil {
		m, err := cgroups.Load(path)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	m, err := cgroups.New(path)
	if err != nil {
		return nil, err
	}
	if err := m.Set(res); err != nil {
		m.Destroy(context.Background())
		return nil, err
	}
	return m, nil
}
