package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/sysctl"
)

// InitOptions are the hooks the skiff-shim binary hands to the init.
type InitOptions struct {
	// PrepareSeccomp compiles a seccomp profile. When nil, a container that
	// asks for seccomp fails to start rather than running unconfined.
	PrepareSeccomp SeccompPreparer
}

// Init is the container init ("skiff-shim init"). It reads its
// configuration from the fds named in the environment, sets the container
// up and execs the user process; it never returns.
//
// Must be called on the main goroutine with the OS thread locked
// (runtime.LockOSThread in an init func of package main): namespaces,
// credentials, capabilities, no_new_privs and seccomp are per-thread state,
// and execve must be called from the thread that holds them.
func Init(opts InitOptions) {
	syncFD, err := envFD(envSyncFD)
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff-shim init:", err)
		os.Exit(1)
	}
	ready := false
	err = runInit(opts, syncFD, &ready)
	// runInit returns only on failure.
	if !ready {
		if serr := sendSync(syncFD, syncMsg{Type: msgError, Error: err.Error()}, -1); serr == nil {
			os.Exit(1)
		}
	}
	fmt.Fprintln(os.Stderr, "skiff-shim init:", err)
	os.Exit(127)
}

func envFD(name string) (int, error) {
	v := os.Getenv(name)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return -1, fmt.Errorf("bad %s=%q: not started by the executor", name, v)
	}
	return fd, nil
}

func runInit(opts InitOptions, syncFD int, ready *bool) error {
	// Until execve (which resets it) no process in the container may
	// ptrace us or open /proc/<pid>/exe, the host's skiff-shim binary.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	// The fds inherited from the parent (config, sync, fifo, namespace)
	// must not leak into the user process.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range(CLOEXEC): %w", err)
	}
	cfgFD, err := envFD(envConfigFD)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(cfgFD), "init-config")
	var cfg initConfig
	err = json.NewDecoder(f).Decode(&cfg)
	f.Close()
	if err != nil {
		return fmt.Errorf("read init config: %w", err)
	}
	if cfg.Process == nil || cfg.SpecPart == nil || cfg.SpecPart.Linux == nil {
		return errors.New("init config without process or linux spec")
	}
	cfg.Spec = cfg.SpecPart.spec()
	for _, fd := range cfg.TaskFDs {
		// This thread, the one that will execve, moves itself.
		_, err := unix.Write(fd, []byte("0"))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("move into the container's cgroup: %w", err)
		}
	}
	if err := sendSync(syncFD, syncMsg{Type: msgConfigured}, -1); err != nil {
		return err
	}
	fifoFD, mntFD, resultFD := -1, -1, -1
	if cfg.Exec {
		mntFD, err = envFD(envMountNS)
	} else {
		fifoFD, err = envFD(envFifoFD)
	}
	if err != nil {
		return err
	}
	if os.Getenv(envResultFD) != "" {
		if resultFD, err = envFD(envResultFD); err != nil {
			return err
		}
	}
	// Set-up creates files with exact modes; the process umask is set in
	// finalize.
	unix.Umask(0)
	for _, name := range []string{envConfigFD, envSyncFD, envFifoFD, envMountNS, envResultFD} {
		os.Unsetenv(name)
	}
	if cfg.Exec {
		return runExecInit(opts, syncFD, mntFD, &cfg, cgroupBarrier(syncFD, &cfg))
	}
	spec := cfg.Spec
	if !cfg.NewMountNS {
		return errors.New("the executor needs a new mount namespace")
	}
	inCgroup := cgroupBarrier(syncFD, &cfg)
	hooks := func() error {
		if err := inCgroup(); err != nil {
			return err
		}
		return createHooks(syncFD, &cfg)
	}
	if err := setupRootfs(&cfg, inCgroup, hooks); err != nil {
		return err
	}
	if cfg.NewUTSNS {
		if spec.Hostname != "" {
			if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
				return fmt.Errorf("sethostname %q: %w", spec.Hostname, err)
			}
		}
		if spec.Domainname != "" {
			if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
				return fmt.Errorf("setdomainname %q: %w", spec.Domainname, err)
			}
		}
	}
	if err := writeSysctls(spec.Linux.Sysctl); err != nil {
		return err
	}
	if err := maskPaths(spec.Linux.MaskedPaths); err != nil {
		return err
	}
	if err := readonlyPaths(spec.Linux.ReadonlyPaths); err != nil {
		return err
	}
	if cfg.Process.Terminal {
		if err := setupConsole(syncFD, cfg.Process, true); err != nil {
			return err
		}
	}
	if spec.Root != nil && spec.Root.Readonly {
		if err := remountReadonly("/"); err != nil {
			return err
		}
	}
	return finalize(opts, &cfg, syncFD, fifoFD, resultFD, ready, inCgroup)
}

// cgroupBarrier returns the function that waits, the first time it is
// called, until the parent has put the init in its cgroup and set its
// limits ("joined", which brings cfg.hostCgroups), then unshares a new
// cgroup namespace (cfg.NewCgroupNS), which is thus rooted at that cgroup. The parent does that while the init sets
// itself up: on a cgroup v1 host its cgroup.procs writes can wait 10 ms for
// the kernel. The init calls it before the first step that needs its
// cgroup (a cgroup mount, device nodes, the create hooks, whose processes
// belong in it) and at the latest before the process's credentials.
func cgroupBarrier(syncFD int, cfg *initConfig) func() error {
	var done bool
	var err error
	return func() error {
		if done {
			return err
		}
		done = true
		var m syncMsg
		if m, err = awaitParent(syncFD, msgJoined, "wait to be placed in the cgroup"); err != nil {
			return err
		}
		cfg.hostCgroups = m.CgroupMounts
		if cfg.NewCgroupNS {
			if uerr := unix.Unshare(unix.CLONE_NEWCGROUP); uerr != nil {
				err = fmt.Errorf("unshare cgroup namespace: %w", uerr)
			}
		}
		return err
	}
}

// createHooks runs, before pivot_root, the create hooks: the parent's
// prestart and createRuntime hooks (in the runtime namespace; we wait for
// its answer), then the createContainer hooks, from here, in the
// container's namespaces but with the host's filesystem still in view, so
// their paths resolve as on the host.
func createHooks(syncFD int, cfg *initConfig) error {
	if cfg.RuntimeHooks {
		if err := sendSync(syncFD, syncMsg{Type: msgHooks}, -1); err != nil {
			return err
		}
		if _, err := awaitParent(syncFD, msgResume, "wait for the runtime's hooks"); err != nil {
			return err
		}
	}
	if h := cfg.Spec.Hooks; h != nil && len(h.CreateContainer) > 0 {
		// Hooks get the usual umask, not the set-up's 0.
		old := unix.Umask(0o022)
		err := runHooks(context.Background(), hookCreateContainer, h.CreateContainer, cfg.HookState)
		unix.Umask(old)
		if err != nil {
			return err
		}
	}
	return nil
}

// runExecInit runs a process inside an existing container. The parent has
// already joined the container's pid, net, ipc, uts and cgroup namespaces
// before cloning us; the mount namespace is joined here because the init
// binary had to be resolved on the host first.
func runExecInit(opts InitOptions, syncFD, mntFD int, cfg *initConfig, inCgroup func() error) error {
	// setns(CLONE_NEWNS) refuses a thread that shares its fs_struct, which
	// every Go thread does.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare(CLONE_FS): %w", err)
	}
	if err := unix.Setns(mntFD, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("setns mount namespace: %w", err)
	}
	unix.Close(mntFD)
	if cfg.Process.Terminal {
		if err := setupConsole(syncFD, cfg.Process, false); err != nil {
			return err
		}
	}
	ready := false
	return finalize(opts, cfg, syncFD, -1, -1, &ready, inCgroup)
}

// finalize switches to the process's credentials on this thread, waits on
// the start barrier (create only) and execs. Order matters: the bounding
// set is reduced while we still have CAP_SETPCAP; PR_SET_KEEPCAPS keeps
// the permitted set across setresuid; capset then restores the effective
// set; no_new_privs and seccomp come last. Without no_new_privs, loading a
// filter needs CAP_SYS_ADMIN, so it is loaded before the user switch.
func finalize(opts InitOptions, cfg *initConfig, syncFD, fifoFD, resultFD int, ready *bool, inCgroup func() error) error {
	p := cfg.Process
	var seccomp *specs.LinuxSeccomp
	if cfg.Spec.Linux != nil {
		seccomp = cfg.Spec.Linux.Seccomp
	}
	var installSeccomp func() error
	if seccomp != nil {
		if opts.PrepareSeccomp == nil {
			return errors.New("spec asks for seccomp but this build has no seccomp loader")
		}
		var err error
		if installSeccomp, err = opts.PrepareSeccomp(seccomp); err != nil {
			return fmt.Errorf("compile seccomp profile: %w", err)
		}
	}
	// What follows is the process's own: it runs in the cgroup.
	if err := inCgroup(); err != nil {
		return err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return fmt.Errorf("create cwd: %w", err)
	}
	if err := unix.Chdir(cwd); err != nil {
		return &os.PathError{Op: "chdir", Path: cwd, Err: err}
	}
	env := withHome(p.Env, p.User.UID)
	var caps *capSets
	if p.Capabilities != nil {
		last, err := capability.LastCap()
		if err != nil {
			return fmt.Errorf("read last capability: %w", err)
		}
		c, err := parseCaps(p.Capabilities, last)
		if err != nil {
			return err
		}
		caps = &c
		if err := dropBounding(c, last); err != nil {
			return err
		}
	}
	if seccomp != nil && !p.NoNewPrivileges {
		if err := installSeccomp(); err != nil {
			return fmt.Errorf("load seccomp filter: %w", err)
		}
	}
	if caps != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
		}
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if caps != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
		}
		if err := applyCaps(*caps); err != nil {
			return err
		}
	}
	umask := 0o022
	if p.User.Umask != nil {
		umask = int(*p.User.Umask)
	}
	unix.Umask(umask)
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	if len(p.Args) == 0 {
		return errors.New("process has no args")
	}
	path, err := lookPath(p.Args[0], env)
	if err != nil {
		return err
	}
	if fifoFD >= 0 {
		if err := sendSync(syncFD, syncMsg{Type: msgReady}, -1); err != nil {
			return err
		}
		*ready = true
		unix.Close(syncFD)
		// The start barrier: Start opens the FIFO for writing and writes
		// one byte. We hold it O_RDWR, so Start never blocks and sees ENXIO
		// only if we are gone.
		var b [1]byte
		for {
			_, err := unix.Read(fifoFD, b[:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("wait on start barrier: %w", err)
			}
			break
		}
		unix.Close(fifoFD)
		if err := startHooks(cfg, resultFD); err != nil {
			return err
		}
	}
	if seccomp != nil && p.NoNewPrivileges {
		if err := installSeccomp(); err != nil {
			return fmt.Errorf("load seccomp filter: %w", err)
		}
	}
	if !hasRlimit(p, "RLIMIT_NOFILE") {
		// No NOFILE in the spec: the process inherits the executor's
		// limit, which syscall.Exec restores (the Go runtime raised ours).
		err := syscall.Exec(path, p.Args, env)
		return &os.PathError{Op: "execve", Path: path, Err: err}
	}
	return execve(path, p.Args, env)
}

// startHooks runs the startContainer hooks, after the start barrier and
// before execve: in the container, with the process's credentials. A
// failure is written to the result FIFO, where Start reads it.
func startHooks(cfg *initConfig, resultFD int) error {
	h := cfg.Spec.Hooks
	if h == nil || len(h.StartContainer) == 0 {
		return nil
	}
	st := *cfg.HookState
	st.Status = StatusCreated
	err := runHooks(context.Background(), hookStartContainer, h.StartContainer, &st)
	if err != nil && resultFD >= 0 {
		_, _ = unix.Write(resultFD, []byte(err.Error()))
	}
	return err
}

func hasRlimit(p *specs.Process, typ string) bool {
	for _, r := range p.Rlimits {
		if r.Type == typ {
			return true
		}
	}
	return false
}

// setUser sets groups, gid and uid of the calling thread only, with raw
// syscalls: the libc-style wrappers in Go apply them to every thread, but
// only this thread will execve.
func setUser(u specs.User) error {
	groups := make([]uint32, len(u.AdditionalGids))
	copy(groups, u.AdditionalGids)
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", groups, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", u.UID, e)
	}
	return nil
}

// withHome adds HOME from the container's /etc/passwd when the spec does
// not set it, as other runtimes do.
func withHome(env []string, uid uint32) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := "/"
	users, err := user.ParsePasswdFileFilter("/etc/passwd", func(u user.User) bool { return u.Uid == int(uid) })
	if err == nil && len(users) > 0 && users[0].Home != "" {
		home = users[0].Home
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}

// lookPath resolves file inside the container using PATH from env.
func lookPath(file string, env []string) (string, error) {
	check := func(p string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return unix.EISDIR
		}
		return unix.Faccessat(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS)
	}
	if strings.Contains(file, "/") {
		if err := check(file); err != nil {
			return "", &os.PathError{Op: "exec", Path: file, Err: err}
		}
		return file, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: executable file not found in $PATH", file)
}

// execve replaces the process with path. It calls the syscall directly:
// syscall.Exec would first restore the RLIMIT_NOFILE soft limit the Go
// runtime saw at start-up, undoing the parent's prlimit.
func execve(path string, args, env []string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	argv, err := syscall.SlicePtrFromStrings(args)
	if err != nil {
		return err
	}
	envv, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	return &os.PathError{Op: "execve", Path: path, Err: e}
}

// setupConsole allocates a pty in the container's devpts instance (so the
// process sees /dev/pts/N of its own namespace), sends the master to the
// parent and makes the slave the controlling terminal and stdio.
func setupConsole(syncFD int, p *specs.Process, bindConsole bool) error {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get pty number: %w", err)
	}
	slavePath := "/dev/pts/" + strconv.Itoa(int(n))
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: slavePath, Err: err}
	}
	defer unix.Close(slave)
	if err := unix.Fchown(slave, int(p.User.UID), -1); err != nil {
		return &os.PathError{Op: "chown", Path: slavePath, Err: err}
	}
	if p.ConsoleSize != nil {
		ws := &unix.Winsize{Row: uint16(p.ConsoleSize.Height), Col: uint16(p.ConsoleSize.Width)}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set console size: %w", err)
		}
	}
	if bindConsole {
		if err := createFile("/dev/console"); err != nil {
			return err
		}
		if err := unix.Mount(slavePath, "/dev/console", "", unix.MS_BIND, ""); err != nil {
			return mountError(slavePath, "/dev/console", "bind", err)
		}
	}
	if err := sendSync(syncFD, syncMsg{Type: msgPty}, master); err != nil {
		return err
	}
	for fd := range 3 {
		if err := unix.Dup2(slave, fd); err != nil {
			return fmt.Errorf("dup pty to fd %d: %w", fd, err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	return nil
}

// writeSysctls writes namespaced sysctls through the container's /proc.
// The parent has checked they are namespaced.
func writeSysctls(sysctls map[string]string) error {
	for k, v := range sysctls {
		p := "/proc/sys/" + sysctl.Path(k)
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}
