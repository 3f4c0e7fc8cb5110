package seccomp

import (
	"runtime"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The RuntimeDefault profile: the behaviour of the default profile Docker
// and containerd ship (default deny with EPERM, an allowlist, argument
// rules for clone, personality and socket, and additions per capability),
// kept here as data in one place. TestRuntimeDefaultGolden pins it.

// baseAllowed are allowed for every container, grouped by what they do.
var baseAllowed = [][]string{
	// Files, directories, descriptors and extended attributes.
	{
		"access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat",
		"dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
		"fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
		"fdatasync", "fgetxattr", "flistxattr", "flock", "fremovexattr", "fsetxattr", "fstat", "fstat64",
		"fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd",
		"getdents", "getdents64", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
		"inotify_rm_watch", "ioctl", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listxattr",
		"llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat",
		"mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pipe", "pipe2",
		"pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
		"readlinkat", "readv", "removexattr", "rename", "renameat", "renameat2", "rmdir", "sendfile",
		"sendfile64", "setxattr", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
		"symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink",
		"unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice", "write", "writev",
	},
	// Waiting for events, asynchronous I/O.
	{
		"epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
		"epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "io_cancel", "io_destroy", "io_getevents",
		"io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "io_uring_enter",
		"io_uring_register", "io_uring_setup", "_newselect", "poll", "ppoll", "ppoll_time64", "pselect6",
		"pselect6_time64", "select", "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime",
		"timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
	},
	// Processes, credentials, scheduling, limits.
	{
		"capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu", "getegid",
		"getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getpgid",
		"getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresgid32", "getresuid",
		"getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "get_thread_area", "gettid",
		"getuid", "getuid32", "ioprio_get", "ioprio_set", "kill", "landlock_add_rule",
		"landlock_create_ruleset", "landlock_restrict_self", "pidfd_open", "pidfd_send_signal", "prctl",
		"prlimit64", "process_mrelease", "restart_syscall", "rseq", "sched_getaffinity", "sched_getattr",
		"sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
		"sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
		"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsgid32",
		"setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setpgid", "setpriority",
		"setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
		"setreuid32", "setrlimit", "set_robust_list", "setsid", "set_thread_area", "set_tid_address",
		"setuid", "setuid32", "sysinfo", "tgkill", "times", "tkill", "ugetrlimit", "uname", "vfork", "wait4",
		"waitid", "waitpid",
		// Debugging one's own children is harmless since kernel 4.8, where
		// seccomp is re-checked after a tracer changes the syscall.
		"ptrace", "process_vm_readv", "process_vm_writev",
	},
	// Signals.
	{
		"alarm", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
		"rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
		"sigaltstack", "sigprocmask", "sigreturn",
	},
	// Clocks and timers (reading; setting needs CAP_SYS_TIME).
	{
		"adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
		"clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "getitimer",
		"gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
		"timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
	},
	// Memory and synchronisation.
	{
		"brk", "futex", "futex_time64", "futex_waitv", "getrandom", "madvise", "membarrier", "memfd_create",
		"memfd_secret", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap",
		"msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
		"remap_file_pages",
	},
	// Sockets (socket itself is argument-checked below).
	{
		"accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv",
		"recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto",
		"setsockopt", "shutdown", "socketcall", "socketpair",
	},
	// System V and POSIX IPC (namespaced).
	{
		"ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
		"mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl",
		"semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
	},
}

// archAllowed are allowed on one GOARCH only.
var archAllowed = map[string][]string{
	"amd64": {"arch_prctl", "modify_ldt"},
	"arm64": {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
}

// capAllowed are allowed when the container holds the capability.
var capAllowed = []struct {
	cap   string
	names []string
}{
	{"CAP_DAC_READ_SEARCH", []string{"open_by_handle_at"}},
	{"CAP_SYS_ADMIN", []string{
		"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
		"lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
		"quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
	}},
	{"CAP_SYS_BOOT", []string{"reboot"}},
	{"CAP_SYS_CHROOT", []string{"chroot"}},
	{"CAP_SYS_MODULE", []string{"delete_module", "init_module", "finit_module"}},
	{"CAP_SYS_PACCT", []string{"acct"}},
	{"CAP_SYS_PTRACE", []string{"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"}},
	{"CAP_SYS_RAWIO", []string{"iopl", "ioperm"}},
	{"CAP_SYS_TIME", []string{"settimeofday", "stime", "clock_settime", "clock_settime64"}},
	{"CAP_SYS_TTY_CONFIG", []string{"vhangup"}},
	{"CAP_SYS_NICE", []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
	{"CAP_SYSLOG", []string{"syslog"}},
	{"CAP_BPF", []string{"bpf"}},
	{"CAP_PERFMON", []string{"perf_event_open"}},
}

// Argument values used by the conditional rules.
const (
	afVsock = 40 // AF_VSOCK: host communication channel, refused
	// Personalities a program may switch to: Linux, the 32-bit uname
	// (PER_LINUX32), UNAME26 and both together; 0xffffffff only queries.
	perLinux    = 0x0
	perLinux32  = 0x8
	perUname26  = 0x20000
	perBoth     = perUname26 | perLinux32
	perQuery    = 0xffffffff
	nsCloneMask = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
		unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
)

// DefaultCapabilities is the capability set of a container that asks for
// none in particular (the Docker/containerd default), which RuntimeDefault
// assumes.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// RuntimeDefault returns the RuntimeDefault profile for a container with
// DefaultCapabilities.
func RuntimeDefault() *specs.LinuxSeccomp { return RuntimeDefaultFor(DefaultCapabilities) }

// RuntimeDefaultFor returns the RuntimeDefault profile for a container
// whose bounding set is caps (names with or without the CAP_ prefix): each
// capability re-allows the syscalls it exists to grant. Without
// CAP_SYS_ADMIN, clone may not create namespaces and clone3, whose flags a
// filter cannot inspect, fails with ENOSYS so libc falls back to clone.
func RuntimeDefaultFor(caps []string) *specs.LinuxSeccomp {
	has := map[string]bool{}
	for _, c := range caps {
		has[normCap(c)] = true
	}
	var allow []string
	for _, g := range baseAllowed {
		allow = append(allow, g...)
	}
	allow = append(allow, archAllowed[runtime.GOARCH]...)
	for _, ca := range capAllowed {
		if has[ca.cap] {
			allow = append(allow, ca.names...)
		}
	}
	slices.Sort(allow)
	allow = slices.Compact(allow)

	eperm := uint(unix.EPERM)
	s := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   nativeArches(),
		Syscalls: []specs.LinuxSyscall{
			{Names: allow, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: afVsock, Op: specs.OpNotEqual},
			}},
		},
	}
	for _, p := range []uint64{perLinux, perLinux32, perUname26, perBoth, perQuery} {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: p, Op: specs.OpEqualTo}},
		})
	}
	if !has["CAP_SYS_ADMIN"] {
		enosys := uint(unix.ENOSYS)
		// s390 swaps clone's first two arguments; Skiff builds for amd64
		// and arm64, where flags are argument 0.
		s.Syscalls = append(s.Syscalls,
			specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: nsCloneMask, ValueTwo: 0, Op: specs.OpMaskedEqual},
			}},
			specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		)
	}
	return s
}

func normCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}
