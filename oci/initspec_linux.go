package oci

import specs "github.com/opencontainers/runtime-spec/specs-go"

// initSpec is the part of a container's spec that the init reads, under the
// spec's own JSON names; initConfig carries it instead of the whole spec.
// Decoding a type makes encoding/json build its codecs for every type the
// type reaches, used or not, and for specs.Spec (Windows, Solaris, VM,
// z/OS, cgroup resources, ...) that is most of a new init's decode: 1.3
// against 0.6 ms on a 2-core machine. TestInitSpecCoversSpec keeps it in
// step with specs.Spec: a field the spec gains must be sent or named as
// the parent's alone.
type initSpec struct {
	Root       *specs.Root   `json:"root,omitempty"`
	Hostname   string        `json:"hostname,omitempty"`
	Domainname string        `json:"domainname,omitempty"`
	Mounts     []specs.Mount `json:"mounts,omitempty"`
	Hooks      *specs.Hooks  `json:"hooks,omitempty"`
	Linux      *initLinux    `json:"linux,omitempty"`
}

// initLinux is the part of specs.Linux that the init reads.
type initLinux struct {
	UIDMappings       []specs.LinuxIDMapping `json:"uidMappings,omitempty"`
	GIDMappings       []specs.LinuxIDMapping `json:"gidMappings,omitempty"`
	Sysctl            map[string]string      `json:"sysctl,omitempty"`
	Devices           []specs.LinuxDevice    `json:"devices,omitempty"`
	Seccomp           *specs.LinuxSeccomp    `json:"seccomp,omitempty"`
	RootfsPropagation string                 `json:"rootfsPropagation,omitempty"`
	MaskedPaths       []string               `json:"maskedPaths,omitempty"`
	ReadonlyPaths     []string               `json:"readonlyPaths,omitempty"`
}

// newInitSpec is the part of s the init reads.
func newInitSpec(s *specs.Spec) *initSpec {
	out := &initSpec{Root: s.Root, Hostname: s.Hostname, Domainname: s.Domainname, Mounts: s.Mounts, Hooks: s.Hooks}
	if l := s.Linux; l != nil {
		out.Linux = &initLinux{
			UIDMappings: l.UIDMappings, GIDMappings: l.GIDMappings, Sysctl: l.Sysctl, Devices: l.Devices,
			Seccomp: l.Seccomp, RootfsPropagation: l.RootfsPropagation,
			MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths,
		}
	}
	return out
}

// spec is the spec the init works from: s's fields, the others unset.
func (s *initSpec) spec() *specs.Spec {
	out := &specs.Spec{Root: s.Root, Hostname: s.Hostname, Domainname: s.Domainname, Mounts: s.Mounts, Hooks: s.Hooks}
	if l := s.Linux; l != nil {
		out.Linux = &specs.Linux{
			UIDMappings: l.UIDMappings, GIDMappings: l.GIDMappings, Sysctl: l.Sysctl, Devices: l.Devices,
			Seccomp: l.Seccomp, RootfsPropagation: l.RootfsPropagation,
			MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths,
		}
	}
	return out
}
