package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/skiffcri/skiff/shim"
)

// detachedEnv marks the re-executed, detached daemon process.
const detachedEnv = "_SKIFF_SHIM_DETACHED"

// readyFd is the inherited pipe on which the detached daemon tells its
// launcher that the socket is up ("ok") or why it failed.
const readyFd = 3

// Flags are the daemon's command-line settings.
type Flags struct {
	Dir         string
	PodID       string
	RuntimeRoot string
	// RuntimeBinary, when set, is an OCI runtime CLI (runc, crun, runsc)
	// that runs the pod's containers instead of the built-in executor,
	// with RuntimeRoot as its --root.
	RuntimeBinary string
	// SharePID starts a pod init as PID 1 of a new PID namespace for the
	// pod's containers to share.
	SharePID bool
	// PodCgroup is the cgroup of the pod init.
	PodCgroup string
	// PodUserNS is the pod's user namespace, which the pod init joins.
	PodUserNS string
	Debug     bool
}

// MainWithRuntime is the body of "skiff-shim daemon" with a chosen runtime
// constructor (Main uses the oci executor; tests use host processes). args
// are the arguments after "daemon". It returns the process exit code.
//
// Invoked by Start, it first acts as a launcher: it re-executes itself in a
// new session with stdio on /dev/null and stderr on <dir>/shim.log, waits
// until that detached copy reports its socket ready, and exits. The
// detached copy is then an orphan re-parented to init (or the nearest
// subreaper), independent of skiffd's lifetime and process group.
func MainWithRuntime(args []string, newRuntime func(Flags) (Runtime, error)) int {
	fs := flag.NewFlagSet("skiff-shim daemon", flag.ContinueOnError)
	var f Flags
	fs.StringVar(&f.Dir, "dir", "", "shim directory (socket, pid file, exit records)")
	fs.StringVar(&f.PodID, "pod", "", "pod sandbox id")
	fs.StringVar(&f.RuntimeRoot, "runtime-root", "", "state directory of the container executor, or of the OCI runtime (its --root)")
	fs.StringVar(&f.RuntimeBinary, "runtime-binary", "", "OCI runtime CLI to run containers with instead of the built-in executor")
	fs.BoolVar(&f.SharePID, "share-pid", false, "start a pod init in a new PID namespace for the containers to share")
	fs.StringVar(&f.PodCgroup, "pod-cgroup", "", "cgroup of the pod init (with --share-pid)")
	fs.StringVar(&f.PodUserNS, "pod-userns", "", "user namespace of the pod init (with --share-pid)")
	fs.BoolVar(&f.Debug, "debug", false, "log debug messages")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if f.Dir == "" || f.PodID == "" {
		fmt.Fprintln(os.Stderr, "skiff-shim daemon: --dir and --pod are required")
		return 2
	}
	if !filepath.IsAbs(f.Dir) {
		fmt.Fprintln(os.Stderr, "skiff-shim daemon: --dir must be absolute")
		return 2
	}
	if f.RuntimeBinary != "" && (!filepath.IsAbs(f.RuntimeBinary) || !filepath.IsAbs(f.RuntimeRoot)) {
		fmt.Fprintln(os.Stderr, "skiff-shim daemon: --runtime-binary needs an absolute path and an absolute --runtime-root")
		return 2
	}
	if os.Getenv(detachedEnv) == "" {
		if err := launch(f.Dir); err != nil {
			fmt.Fprintln(os.Stderr, "skiff-shim daemon:", err)
			return 1
		}
		return 0
	}
	return daemonMain(f, newRuntime)
}

// launch starts the detached daemon and waits for its readiness report.
func launch(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	logPath := filepath.Join(dir, shim.LogFileName)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = os.Args
	cmd.Env = append(os.Environ(), detachedEnv+"=1")
	cmd.Dir = "/"
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{w} // becomes fd 3 (readyFd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	// The launcher never waits for the daemon: when it exits right after
	// this, the daemon is re-parented and outlives its starter.
	msg, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	cmd.Process.Release()
	switch s := strings.TrimSpace(string(msg)); s {
	case "ok":
		return nil
	case "":
		return fmt.Errorf("shim exited before it was ready; see %s", logPath)
	default:
		return errors.New(s)
	}
}

func daemonMain(f Flags, newRuntime func(Flags) (Runtime, error)) int {
	os.Unsetenv(detachedEnv)
	// An idle shim mostly sleeps; a small heap target and few Ps keep its
	// resident set near the Go runtime's floor.
	debug.SetGCPercent(25)
	runtime.GOMAXPROCS(2)

	ready := os.NewFile(readyFd, "ready")
	// The pipe must not leak into containers.
	syscall.CloseOnExec(readyFd)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "skiff-shim daemon:", err)
		if ready != nil {
			fmt.Fprintln(ready, err)
			ready.Close()
		}
		return 1
	}
	level := slog.LevelInfo
	if f.Debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// The executor logs (warnings, and its phases at debug) through the
	// default logger.
	slog.SetDefault(logger)
	rt, err := newRuntime(f)
	if err != nil {
		return fail(err)
	}
	// SIGTERM stops serving; containers keep running, but a pod init is
	// stopped (its PID namespace, shared by the pod, goes with it) rather
	// than left behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = Serve(ctx, Config{
		Dir:       f.Dir,
		PodID:     f.PodID,
		Runtime:   rt,
		Logger:    logger,
		SharePID:  f.SharePID,
		PodCgroup: f.PodCgroup,
		PodUserNS: f.PodUserNS,
		Ready: func() {
			if ready != nil {
				fmt.Fprintln(ready, "ok")
				ready.Close()
				ready = nil
			}
		},
	})
	if err != nil {
		return fail(err)
	}
	logger.Info("shim shut down")
	return 0
}
