package seccomp

import (
	"os"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// Filter is a compiled seccomp program ready to install. Compiling
// allocates; installing does not, so container init compiles first and
// installs as the last step before execve.
type Filter struct {
	prog  []unix.SockFilter
	flags uintptr
}

// Prepare compiles s and resolves its flags.
func Prepare(s *specs.LinuxSeccomp) (*Filter, error) {
	prog, err := Compile(s)
	if err != nil {
		return nil, err
	}
	flags, err := filterFlags(s.Flags)
	if err != nil {
		return nil, err
	}
	return &Filter{prog: prog, flags: flags}, nil
}

// Program returns the compiled BPF instructions.
func (f *Filter) Program() []unix.SockFilter { return f.prog }

// filterFlags maps the spec's flag names to SECCOMP_FILTER_FLAG_* bits.
// TSYNC is dropped on purpose: the filter goes onto the one thread that
// calls execve, and execve ends every other thread of the process anyway;
// synchronising would instead impose the container's filter on Go runtime
// threads that still run set-up code.
func filterFlags(names []specs.LinuxSeccompFlag) (uintptr, error) {
	var f uintptr
	for _, n := range names {
		switch n {
		case specs.LinuxSeccompFlagLog:
			f |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			f |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			f |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		case "SECCOMP_FILTER_FLAG_TSYNC":
		default:
			return 0, errdefs.InvalidArgument("unknown seccomp flag %q", n)
		}
	}
	return f, nil
}

// Install loads the filter on the calling thread with seccomp(2), falling
// back to prctl(PR_SET_SECCOMP) on kernels without it (only when no flags
// are needed). It must run on a locked OS thread, after no_new_privs was
// set or while the thread still holds CAP_SYS_ADMIN; it does not allocate.
func (f *Filter) Install() error {
	if len(f.prog) == 0 || len(f.prog) > maxInsns {
		return errdefs.InvalidArgument("seccomp program of %d instructions", len(f.prog))
	}
	fprog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS && f.flags == 0 {
		_, _, errno = unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)))
		if errno != 0 {
			return os.NewSyscallError("prctl(PR_SET_SECCOMP)", errno)
		}
	} else if errno != 0 {
		return os.NewSyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", errno)
	}
	runtime.KeepAlive(f)
	return nil
}

// Load compiles s and installs it on the calling thread. See Install for
// the preconditions; callers that care about work after fork should use
// Prepare early and Install late instead.
func Load(s *specs.LinuxSeccomp) error {
	f, err := Prepare(s)
	if err != nil {
		return err
	}
	return f.Install()
}
