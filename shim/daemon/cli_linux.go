package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/procwait"
)

// consoleWait bounds the wait for the terminal master once the OCI runtime
// has exited: it sends the master before it exits, so the connection is
// already queued by then.
const consoleWait = 5 * time.Second

// CLIRuntime is a Runtime that drives an external OCI runtime (runc, crun,
// runsc) through its command line: "create --bundle --pid-file
// --console-socket", "start", "kill", "delete", "exec --process --detach",
// "update --resources -", each with "--root Root".
//
// Each container gets a bundle directory <BundleDir>/<id> holding the
// config.json the runtime reads (the spec skiffd built, root.path set to the
// rootfs skiffd mounted), the init's pid file and the runtime's log.
//
// The processes the runtime starts are the shim's grandchildren: the
// runtime forks them and exits, and the kernel re-parents them to the shim,
// a child subreaper. By then the runtime command has exited inside
// reaper.spawn, with orphan reaping paused, and the pid is marked owned
// before reaping resumes; an init that already exited is a zombie child of
// the shim that nobody else waits for, so Process.Wait still gets its
// status.
type CLIRuntime struct {
	// Binary is the OCI runtime's executable.
	Binary string
	// Root is the runtime's state directory (its --root).
	Root string
	// BundleDir holds the containers' bundles.
	BundleDir string
	// Env is the runtime's environment; nil means a minimal PATH only.
	Env []string

	containerCgroups
}

// NewCLIRuntime returns a Runtime that runs binary with --root root and
// keeps bundles under bundleDir.
func NewCLIRuntime(binary, root, bundleDir string) *CLIRuntime {
	return &CLIRuntime{Binary: binary, Root: root, BundleDir: bundleDir}
}

// cliProcess is a process the OCI runtime started and left to the shim.
type cliProcess struct {
	pid     int
	console *os.File
}

func (p *cliProcess) Pid() int          { return p.pid }
func (p *cliProcess) Console() *os.File { return p.console }

// Wait implements Process: the process is the shim's child once the
// runtime that forked it has exited.
func (p *cliProcess) Wait() (ExitStatus, error) {
	// Parked in the poller until the process exits, not in a thread.
	_ = procwait.Exited(p.pid)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return ExitStatus{}, &os.SyscallError{Syscall: "wait4 " + strconv.Itoa(p.pid), Err: err}
		}
		break
	}
	return waitStatus(ws), nil
}

func waitStatus(ws unix.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

func (r *CLIRuntime) bundle(id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return "", errdefs.InvalidArgument("container id %q", id)
	}
	return filepath.Join(r.BundleDir, id), nil
}

// globalArgs are the runtime's flags before the subcommand.
func (r *CLIRuntime) globalArgs(logFile string) []string {
	args := []string{"--root", r.Root}
	if logFile != "" {
		args = append(args, "--log", logFile, "--log-format", "json")
	}
	return args
}

// createArgs builds the command line of "create".
func (r *CLIRuntime) createArgs(id, bundle, pidFile, consoleSocket string) []string {
	args := append(r.globalArgs(filepath.Join(bundle, "runtime.log")), "create", "--bundle", bundle, "--pid-file", pidFile)
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	return append(args, id)
}

// execArgs builds the command line of a detached "exec".
func (r *CLIRuntime) execArgs(id, logFile, processFile, pidFile, consoleSocket string) []string {
	args := append(r.globalArgs(logFile), "exec", "--process", processFile, "--pid-file", pidFile, "--detach")
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	return append(args, id)
}

// killArgs builds the command line of "kill".
func (r *CLIRuntime) killArgs(id string, sig syscall.Signal, all bool) []string {
	args := append(r.globalArgs(""), "kill")
	if all {
		args = append(args, "--all")
	}
	return append(args, id, strconv.Itoa(int(sig)))
}

// command runs the runtime with args and stdio (nil files are /dev/null).
// Without stdio its stderr is kept for the error; with stdio (create and
// exec hand their stdio to the container) the error is read from logFile.
func (r *CLIRuntime) command(ctx context.Context, args []string, stdio *Stdio, stdin io.Reader, logFile string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.Binary, args...)
	cmd.Env = r.Env
	if cmd.Env == nil {
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	if stdio != nil {
		// A nil *os.File must stay a nil io.Reader/Writer for /dev/null.
		if stdio.Stdin != nil {
			cmd.Stdin = stdio.Stdin
		}
		if stdio.Stdout != nil {
			cmd.Stdout = stdio.Stdout
		}
		if stdio.Stderr != nil {
			cmd.Stderr = stdio.Stderr
		}
	} else {
		cmd.Stdin = stdin
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
	}
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	sub := subcommand(args)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(r.Binary), sub, ctx.Err())
	}
	msg := strings.TrimSpace(stderr.String())
	if logFile != "" {
		if m := lastLogError(logFile); m != "" {
			msg = m
		}
	}
	if msg == "" {
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(r.Binary), sub, err)
	}
	return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(r.Binary), sub, err, msg)
}

// subcommand names the runtime's subcommand in args, for errors.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--root", "--log", "--log-format":
			i++
		default:
			return args[i]
		}
	}
	return ""
}

// lastLogError returns the last error message of a runtime's JSON log
// (runc's and crun's "--log-format json": {"level":"error","msg":...}).
func lastLogError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			last = e.Msg
		}
	}
	return last
}

// Create implements Runtime: it writes the bundle and runs "create", which
// leaves the init waiting for "start".
func (r *CLIRuntime) Create(ctx context.Context, id string, spec *specs.Spec, rootfs string, stdio Stdio) (_ Process, retErr error) {
	bundle, err := r.bundle(id)
	if err != nil {
		return nil, err
	}
	if spec == nil || spec.Process == nil {
		return nil, errdefs.InvalidArgument("container %q: spec without process", id)
	}
	s := *spec
	root := specs.Root{}
	if spec.Root != nil {
		root = *spec.Root
	}
	if rootfs != "" {
		root.Path = rootfs
	}
	if root.Path == "" {
		return nil, errdefs.InvalidArgument("container %q: no rootfs", id)
	}
	s.Root = &root
	if err := os.RemoveAll(bundle); err != nil {
		return nil, fmt.Errorf("bundle of container %q: %w", id, err)
	}
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, fmt.Errorf("bundle of container %q: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			r.cleanup(context.WithoutCancel(ctx), id, bundle)
		}
	}()
	b, err := json.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("spec of container %q: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return nil, fmt.Errorf("bundle of container %q: %w", id, err)
	}
	pidFile := filepath.Join(bundle, "init.pid")
	var cs *consoleSocket
	if s.Process.Terminal {
		if cs, err = newConsoleSocket(); err != nil {
			return nil, fmt.Errorf("console socket of container %q: %w", id, err)
		}
		defer cs.Close()
	}
	args := r.createArgs(id, bundle, pidFile, cs.Path())
	if _, err := r.command(ctx, args, &stdio, nil, filepath.Join(bundle, "runtime.log")); err != nil {
		return nil, fmt.Errorf("create container %q: %w", id, err)
	}
	p, err := r.started(pidFile, cs)
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", id, err)
	}
	if s.Process.ConsoleSize != nil && p.console != nil {
		// Before start, so the user process sees the size from its first
		// look at the terminal.
		_ = unix.IoctlSetWinsize(int(p.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{
			Row: uint16(s.Process.ConsoleSize.Height), Col: uint16(s.Process.ConsoleSize.Width),
		})
	}
	if s.Linux != nil {
		r.remember(id, s.Linux.CgroupsPath)
	}
	return p, nil
}

// started reads the pid the runtime wrote, checks that the process is now
// the shim's child, and takes the terminal master from cs.
func (r *CLIRuntime) started(pidFile string, cs *consoleSocket) (*cliProcess, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil, fmt.Errorf("pid file %s: bad pid %q", pidFile, b)
	}
	p := &cliProcess{pid: pid}
	// The runtime has exited, so its forks are re-parented by now: to the
	// shim, or, if the shim were no subreaper, to init, where no wait of
	// ours would ever see the exit.
	if ppid, err := parentPid(pid); err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	} else if ppid != os.Getpid() {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, fmt.Errorf("process %d has parent %d, not the shim (%d): is the shim a child subreaper?", pid, ppid, os.Getpid())
	}
	if cs != nil {
		f, err := cs.receive(consoleWait)
		if err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			return nil, err
		}
		p.console = f
	}
	return p, nil
}

// parentPid reads a process's parent from /proc/<pid>/stat (a zombie's
// too).
func parentPid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: the fields after
	// it start after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.Atoi(f[1])
}

// hasState reports whether the runtime keeps state for id under Root.
func (r *CLIRuntime) hasState(id string) bool {
	_, err := os.Lstat(filepath.Join(r.Root, id))
	return err == nil
}

// cleanup removes what a failed Create left: the runtime's state and the
// bundle.
func (r *CLIRuntime) cleanup(ctx context.Context, id, bundle string) {
	if r.hasState(id) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, _ = r.command(ctx, append(r.globalArgs(""), "delete", "--force", id), nil, nil, "")
	}
	_ = os.RemoveAll(bundle)
}

// Start implements Runtime.
func (r *CLIRuntime) Start(ctx context.Context, id string) error {
	if _, err := r.bundle(id); err != nil {
		return err
	}
	if _, err := r.command(ctx, append(r.globalArgs(""), "start", id), nil, nil, ""); err != nil {
		return fmt.Errorf("start container %q: %w", id, err)
	}
	return nil
}

// Kill implements Runtime.
func (r *CLIRuntime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	if _, err := r.bundle(id); err != nil {
		return err
	}
	if !r.hasState(id) {
		return errdefs.NotFound("container %q in %s", id, r.Binary)
	}
	if _, err := r.command(ctx, r.killArgs(id, sig, all), nil, nil, ""); err != nil {
		return fmt.Errorf("kill container %q: %w", id, err)
	}
	return nil
}

// Delete implements Runtime: "delete --force" kills what is left of the
// container and removes its cgroup and state; then the bundle goes.
func (r *CLIRuntime) Delete(ctx context.Context, id string) error {
	bundle, err := r.bundle(id)
	if err != nil {
		return err
	}
	if r.hasState(id) {
		if _, err := r.command(ctx, append(r.globalArgs(""), "delete", "--force", id), nil, nil, ""); err != nil {
			return fmt.Errorf("delete container %q: %w", id, err)
		}
	}
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("bundle of container %q: %w", id, err)
	}
	r.forget(id)
	return nil
}

// Exec implements Runtime with a detached "exec": the runtime starts p and
// exits, leaving the process to the shim.
func (r *CLIRuntime) Exec(ctx context.Context, id string, p *specs.Process, stdio Stdio) (Process, error) {
	bundle, err := r.bundle(id)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(bundle, "exec-")
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	defer os.RemoveAll(dir)
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	procFile, pidFile, logFile := filepath.Join(dir, "process.json"), filepath.Join(dir, "pid"), filepath.Join(dir, "runtime.log")
	if err := os.WriteFile(procFile, b, 0o600); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	var cs *consoleSocket
	if p.Terminal {
		if cs, err = newConsoleSocket(); err != nil {
			return nil, fmt.Errorf("exec in container %q: console socket: %w", id, err)
		}
		defer cs.Close()
	}
	if _, err := r.command(ctx, r.execArgs(id, logFile, procFile, pidFile, cs.Path()), &stdio, nil, logFile); err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	proc, err := r.started(pidFile, cs)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	if p.ConsoleSize != nil && proc.console != nil {
		_ = unix.IoctlSetWinsize(int(proc.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{
			Row: uint16(p.ConsoleSize.Height), Col: uint16(p.ConsoleSize.Width),
		})
	}
	return proc, nil
}

// Update implements Runtime with "update --resources -".
func (r *CLIRuntime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if _, err := r.bundle(id); err != nil {
		return err
	}
	if !r.hasState(id) {
		return errdefs.NotFound("container %q in %s", id, r.Binary)
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("update container %q: %w", id, err)
	}
	if _, err := r.command(ctx, append(r.globalArgs(""), "update", "--resources", "-", id), nil, bytes.NewReader(b), ""); err != nil {
		return fmt.Errorf("update container %q: %w", id, err)
	}
	return nil
}

// consoleSocket is the socket an OCI runtime sends a terminal master on
// (--console-socket): one connection, one message with the fd in
// SCM_RIGHTS.
type consoleSocket struct {
	dir string
	l   *net.UnixListener
}

// newConsoleSocket listens in a fresh directory under the temporary
// directory: a socket path must fit in 108 bytes, which one under the
// shim's directory might not.
func newConsoleSocket() (*consoleSocket, error) {
	dir, err := os.MkdirTemp("", "skiff-console-")
	if err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &consoleSocket{dir: dir, l: l}, nil
}

// Path returns the socket's path, "" for a nil socket (no terminal).
func (c *consoleSocket) Path() string {
	if c == nil {
		return ""
	}
	return filepath.Join(c.dir, "s")
}

// Close stops listening and removes the socket.
func (c *consoleSocket) Close() error {
	err := c.l.Close()
	os.RemoveAll(c.dir)
	return err
}

// receive accepts the runtime's connection and returns the fd it sent.
func (c *consoleSocket) receive(timeout time.Duration) (*os.File, error) {
	if err := c.l.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	conn, err := c.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("console socket: no terminal from the runtime: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: message without a terminal fd (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("console socket: message without one terminal fd (%v)", err)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}
