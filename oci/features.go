package oci

import (
	"maps"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/skiffcri/skiff/oci/nsenter"
)

// Features describes what this executor build supports, in the runtime
// spec's features format ("runc features"): what a caller may put in a
// spec, not what the host's kernel allows.
func Features() features.Features {
	yes, no, idmap := true, false, nsenter.Available
	namespaces := []string{
		string(specs.CgroupNamespace), string(specs.IPCNamespace), string(specs.MountNamespace),
		string(specs.NetworkNamespace), string(specs.PIDNamespace), string(specs.UTSNamespace),
	}
	// Joining a pod's user namespace needs the pre-runtime stage; idmapped
	// mounts are made for containers in a user namespace only.
	if nsenter.Available {
		namespaces = append(namespaces, string(specs.UserNamespace))
	}
	opts := slices.Concat(slices.Collect(maps.Keys(mountFlagOpts)), slices.Collect(maps.Keys(propagationOpts)),
		slices.Collect(maps.Keys(recursiveOpts)))
	slices.Sort(opts)
	return features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		// Specs with hooks are refused.
		Hooks:        []string{},
		MountOptions: opts,
		Linux: &features.Linux{
			Namespaces: namespaces,
			Cgroup:     &features.Cgroup{V1: &yes, V2: &yes, Systemd: &no, SystemdUser: &no},
			Seccomp:    &features.Seccomp{Enabled: &yes},
			Apparmor:   &features.Apparmor{Enabled: &no},
			Selinux:    &features.Selinux{Enabled: &no},
			MountExtensions: &features.MountExtensions{
				IDMap: &features.IDMap{Enabled: &idmap},
			},
		},
	}
}
