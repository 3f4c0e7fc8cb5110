// Package sandbox creates and releases the operating-system resources a pod
// owns outside its containers: pinned namespaces (net, ipc, uts and, when the
// pod shares one, pid), the pod's hostname, hosts and resolv.conf files, its
// /dev/shm, and namespaced sysctls. The CRI RPCs that sequence these live in
// package cri; this package only knows the kernel.
//
// Namespaces are created on a locked OS thread that is thrown away afterwards
// (its goroutine exits while still locked, so the Go runtime terminates the
// thread): a thread whose namespaces differ from the process's must never run
// other goroutines.
//
// A pod with its own user namespace (hostUsers: false) cannot be made that
// way: the kernel refuses a new user namespace to a multi-threaded process.
// CreateUserNamespaces has a short-lived holder process, the skiff-shim
// binary, cloned into the new user namespace and the namespaces it owns,
// and pins them from /proc/<pid>/ns before the holder exits.
//
// A RunPodSandbox built on it runs, in order, undoing each step on failure:
//
//	ns, _ := CreateNamespaces(ctx, nsDir, NetNS|IPCNS|UTSNS, hostname) // host modes drop kinds
//	    // (CreateUserNamespaces instead for a pod with its own user namespace)
//	WriteHostname(filesDir, hostname); WriteResolvConf(filesDir, dns)
//	MountShm(ctx, filepath.Join(filesDir, "shm"), 0, 0, 0)            // unless host IPC
//	ApplySysctls(ns, sysctls)
//	... CNI ADD on ns.Net, then WriteHosts(filesDir, hostNetwork, entries) ...
//	... shared PID namespace: the shim starts the pod init with CLONE_NEWPID,
//	    then PinPIDNamespace(nsDir, initPID) ...
//
// and StopPodSandbox/RemovePodSandbox undo them in reverse (CNI DEL before
// RemoveNamespaces, so plugins can still see the pod's interface).
package sandbox
