package main

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/oci/seccomp"
)

// seccompProfiles gives the spec generator the executor's seccomp profiles.
type seccompProfiles struct{}

func (seccompProfiles) RuntimeDefault(caps []string) *specs.LinuxSeccomp {
	return seccomp.RuntimeDefaultFor(caps)
}

func (seccompProfiles) Load(path string) (*specs.LinuxSeccomp, error) {
	return seccomp.LoadProfile(path)
}
