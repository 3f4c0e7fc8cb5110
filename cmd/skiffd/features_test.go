package main

import (
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/skiffcri/skiff/cri"
)

// TestOCIFeatures: an OCI runtime's handler has a feature only when both
// the node and the runtime's features document have it.
func TestOCIFeatures(t *testing.T) {
	yes := true
	runc11 := features.Features{
		MountOptions: []string{"bind", "rbind", "ro", "rro"},
		Linux:        &features.Linux{Namespaces: []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"}},
	}
	idmap := runc11
	idmap.Linux = &features.Linux{Namespaces: runc11.Linux.Namespaces, MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}}}
	all := cri.Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	for _, tc := range []struct {
		name  string
		feats features.Features
		node  cri.Features
		want  cri.Features
	}{
		{"runc 1.1: rro, no idmapped mounts", runc11, all, cri.Features{RecursiveReadOnlyMounts: true}},
		{"a runtime with idmapped mounts", idmap, all, all},
		{"a node without mount_setattr", idmap, cri.Features{UserNamespaces: true}, cri.Features{UserNamespaces: true}},
		{"a node without user namespaces", idmap, cri.Features{RecursiveReadOnlyMounts: true}, cri.Features{RecursiveReadOnlyMounts: true}},
		{"no features document", features.Features{}, all, cri.Features{}},
	} {
		if got := ociFeatures(tc.feats, tc.node); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
