// Package e2e runs the real skiffd and skiff-shim binaries on the real
// kernel and drives them only through the CRI, as the kubelet does: images
// from the project's test registry, pods on a private CNI bridge, containers,
// logs, exec and recovery after kill -9 of the daemon.
//
// The tests need root, iptables and the CNI plugins in /usr/lib/cni; they
// skip otherwise. Every test starts its own daemon on a throwaway root and
// state under a temp dir named "skiff-test-e2e.*", and at the end checks
// that the runtime released everything it made (mounts, network
// namespaces, veths, IP allocations, iptables rules, cgroups, processes)
// before removing whatever is left.
package e2e
