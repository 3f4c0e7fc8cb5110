package main

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/oci/seccomp"
)

// initOptions wires the seccomp compiler and loader into the container init.
func initOptions() oci.InitOptions {
	return oci.InitOptions{PrepareSeccomp: prepareSeccomp}
}

func prepareSeccomp(s *specs.LinuxSeccomp) (func() error, error) {
	f, err := seccomp.Prepare(s)
	if err != nil {
		return nil, err
	}
	return f.Install, nil
}
