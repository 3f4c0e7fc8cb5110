package oci

import (
	"testing"

	"github.com/skiffcri/skiff/oci/cgroups"
)

func TestCgroupHostSource(t *testing.T) {
	h := &cgroupHost{own: map[string]string{
		"cpu": "/kubepods/pod1/c1", "cpuacct": "/kubepods/pod1/c1", "memory": "/kubepods/pod1/c1",
		"name=systemd": "/", "": "/kubepods/pod1/c1",
	}}
	for _, tc := range []struct {
		name  string
		mount cgroups.Mount
		want  string
	}{
		{"co-mounted v1", cgroups.Mount{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", Version: 1, Controllers: []string{"cpu", "cpuacct"}},
			"/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1"},
		{"named hierarchy", cgroups.Mount{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", Version: 1, Controllers: []string{"name=systemd"}},
			"/sys/fs/cgroup/systemd"},
		{"cgroup2 of a hybrid host", cgroups.Mount{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", Version: 2},
			"/sys/fs/cgroup/unified/kubepods/pod1/c1"},
		{"hierarchy mounted from a subtree", cgroups.Mount{Mountpoint: "/sys/fs/cgroup/memory", Root: "/kubepods", Version: 1, Controllers: []string{"memory"}},
			"/sys/fs/cgroup/memory/pod1/c1"},
		{"own cgroup outside the mounted subtree", cgroups.Mount{Mountpoint: "/sys/fs/cgroup/memory", Root: "/other", Version: 1, Controllers: []string{"memory"}},
			""},
		{"hierarchy the init is not in", cgroups.Mount{Mountpoint: "/sys/fs/cgroup/pids", Root: "/", Version: 1, Controllers: []string{"pids"}},
			""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.source(tc.mount); got != tc.want {
				t.Errorf("source = %q, want %q", got, tc.want)
			}
		})
	}
}
