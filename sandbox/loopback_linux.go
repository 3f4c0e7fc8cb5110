package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// loopbackUp brings up "lo" in the calling thread's network namespace.
//
// Every runtime does this itself (containerd and CRI-O alike) because the
// CNI configs that real clusters install (flannel, Calico, Cilium) do not
// chain the loopback plugin: without it, 127.0.0.1 inside a pod is
// unreachable. Bringing it up again when a conflist also chains the plugin
// is harmless.
//
// Must be called with the OS thread locked, inside the pod's new network
// namespace: the socket used for the ioctl belongs to the namespace of the
// thread that creates it.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return &os.PathError{Op: "SIOCGIFFLAGS", Path: "lo", Err: err}
	}
	flags := ifr.Uint16()
	if flags&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(flags | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return &os.PathError{Op: "SIOCSIFFLAGS", Path: "lo", Err: err}
	}
	return nil
}
