package oci

import (
	"fmt"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/sysctl"
)

// validateSysctls accepts only sysctls that are namespaced (package
// sysctl's rule) and whose namespace is not the host's.
func validateSysctls(sysctls map[string]string, l *specs.Linux) error {
	has := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		has[ns.Type] = true
	}
	for k := range sysctls {
		kind, err := sysctl.Classify(k)
		if err != nil {
			return err
		}
		need := map[sysctl.Namespace]specs.LinuxNamespaceType{
			sysctl.Net: specs.NetworkNamespace, sysctl.IPC: specs.IPCNamespace, sysctl.UTS: specs.UTSNamespace,
		}[kind]
		if !has[need] {
			return errdefs.InvalidArgument("sysctl %q needs a %s namespace that is not the host's", k, need)
		}
	}
	return nil
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func validateProcess(p *specs.Process) error {
	if p == nil {
		return errdefs.InvalidArgument("spec without process")
	}
	if len(p.Args) == 0 {
		return errdefs.InvalidArgument("process without args")
	}
	for _, r := range p.Rlimits {
		if _, ok := rlimitNames[r.Type]; !ok {
			return errdefs.InvalidArgument("unknown rlimit %q", r.Type)
		}
	}
	if p.Capabilities != nil {
		last, err := capability.LastCap()
		if err != nil {
			return fmt.Errorf("read last capability: %w", err)
		}
		if _, err := parseCaps(p.Capabilities, last); err != nil {
			return err
		}
	}
	return nil
}
