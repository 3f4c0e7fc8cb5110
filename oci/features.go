package oci

import (
	"maps"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Features describes what this executor supports, in the runtime spec's
// features format ("runc features"): what a caller may put in a spec, not
// what the host's kernel allows. User namespaces and idmapped mounts are
// listed when skiff-nsenter, which joins user namespaces, is installed.
func (e *Executor) Features() features.Features {
	_, err := e.nsenterPath()
	yes, no, idmap := true, false, err == nil
	namespaces := []string{
		string(specs.CgroupNamespace), string(specs.IPCNamespace), string(specs.MountNamespace),
		string(specs.NetworkNamespace), string(specs.PIDNamespace), string(specs.UTSNamespace),
	}
	// Joining a pod's user namespace needs the pre-runtime stage; idmapped
	// mounts are made for containers in a user namespace only.
	if idmap {
		namespaces = append(namespaces, string(specs.UserNamespace))
	}
	opts := slices.Concat(slices.Collect(maps.Keys(mountFlagOpts)), slices.Collect(maps.Keys(propagationOpts)),
		slices.Collect(maps.Keys(recursiveOpts)))
	slices.Sort(opts)
	return features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks: []string{hookPrestart, hookCreateRuntime, hookCreateContainer,
			hookStartContainer, hookPoststart, hookPoststop},
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
