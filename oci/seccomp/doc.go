// Package seccomp turns OCI seccomp configurations into classic BPF
// programs and installs them, in pure Go (no libseccomp, no cgo), so that
// the statically linked shim can filter container syscalls.
//
// go-seccomp-bpf (elastic) was evaluated as the compiler: it compiles one
// architecture per policy, has no masked-equal comparison (needed for the
// default profile's clone rule), no per-rule errno, and its root package
// pulls a config library in. This package therefore has its own small
// compiler and uses only go-seccomp-bpf's generated syscall tables.
package seccomp
