package oci

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// nsFlags maps runtime-spec namespace types to clone flags.
var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// nsPlan is how the init gets its namespaces: cloneFlags are new at clone
// time, join are setns'd by the parent's cloning thread.
type nsPlan struct {
	cloneFlags uintptr
	join       []nsJoin
	newCgroup  bool
	newUTS     bool
	newNet     bool
	newIPC     bool
	joinPid    bool
	// joinUser is the user namespace to join (by the init's pre-runtime
	// stage, package nsenter); unshare are the new namespaces that stage
	// creates once joined, so that the user namespace owns them.
	joinUser string
	unshare  uintptr
	// newUser: a new user namespace at clone time, with the spec's maps.
	newUser bool
}

// userOwned are the namespaces a joined user namespace must own, so they
// are unshared after joining it rather than cloned.
const userOwned = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET

type nsJoin struct {
	typ  int
	path string
	fd   *os.File
}

func planNamespaces(l *specs.Linux) (nsPlan, error) {
	var p nsPlan
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		flag, ok := nsFlags[ns.Type]
		if !ok {
			return p, errdefs.InvalidArgument("unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return p, errdefs.InvalidArgument("namespace %q given twice", ns.Type)
		}
		seen[ns.Type] = true
		switch ns.Type {
		case specs.TimeNamespace:
			// Only a new child can enter a time namespace.
			return p, errdefs.Unimplemented("%s namespace", ns.Type)
		case specs.UserNamespace:
			if len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0 {
				return p, errdefs.InvalidArgument("a user namespace needs uidMappings and gidMappings")
			}
			if ns.Path == "" {
				p.newUser = true
				p.cloneFlags |= unix.CLONE_NEWUSER
				continue
			}
			p.joinUser = ns.Path
			continue
		case specs.MountNamespace:
			if ns.Path != "" {
				return p, errdefs.Unimplemented("joining a mount namespace for a new container")
			}
		}
		if ns.Path != "" {
			p.join = append(p.join, nsJoin{typ: flag, path: ns.Path})
			if ns.Type == specs.PIDNamespace {
				p.joinPid = true
			}
			continue
		}
		switch ns.Type {
		case specs.CgroupNamespace:
			p.newCgroup = true // unshared by the init once it is in its cgroup
			continue
		case specs.UTSNamespace:
			p.newUTS = true
		case specs.NetworkNamespace:
			p.newNet = true
		case specs.IPCNamespace:
			p.newIPC = true
		}
		p.cloneFlags |= uintptr(flag)
	}
	if !seen[specs.MountNamespace] {
		return p, errdefs.InvalidArgument("spec without a mount namespace")
	}
	if p.joinUser != "" {
		p.unshare = p.cloneFlags & userOwned
		p.cloneFlags &^= userOwned
	}
	return p, nil
}

// startInit starts cmd after joining the namespaces in join. Joining
// happens on a locked OS thread that os/exec then clones from, so the child
// inherits that thread's namespaces (setns on a pid namespace only affects
// children, which is exactly what we want). The thread is never unlocked:
// the goroutine exits locked and the Go runtime terminates the tainted
// thread instead of reusing it.
func startInit(cmd *exec.Cmd, join []nsJoin) error {
	if len(join) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, j := range join {
			if err := unix.Setns(int(j.fd.Fd()), j.typ); err != nil {
				errc <- &os.PathError{Op: "setns", Path: j.path, Err: err}
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func openJoins(join []nsJoin) error {
	for i := range join {
		f, err := os.Open(join[i].path)
		if err != nil {
			return fmt.Errorf("open namespace: %w", err)
		}
		join[i].fd = f
	}
	return nil
}

func closeJoins(join []nsJoin) {
	for _, j := range join {
		if j.fd != nil {
			j.fd.Close()
		}
	}
}

// execNamespaces are joined by the parent thread for Exec (the mount
// namespace is joined by the init itself).
var execNamespaces = []struct {
	name string
	typ  int
}{
	{"cgroup", unix.CLONE_NEWCGROUP},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID},
}
