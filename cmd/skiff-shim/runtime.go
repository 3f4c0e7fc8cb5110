package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/phases"
	"github.com/skiffcri/skiff/internal/signame"
	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/shim"
)

const runtimeUsage = `usage: skiff-shim runtime [--root DIR] [--debug] COMMAND ...

commands:
  create --bundle DIR [--console-socket PATH] [--pid-file FILE] ID
  start ID
  state ID                   the OCI state as JSON (status, pid, bundle, ...)
  kill [--all] ID [SIGNAL]
  delete [--force] ID
  update --resources FILE ID  set the limits of a runtime-spec LinuxResources (JSON; - for stdin)
  run --bundle DIR ID        create, start, wait; exits with the container's code
  exec [-t] ID CMD [ARG...]   run a process in a running container
  kill-cgroup PATH           kill every process of cgroup PATH and remove it (a pod init's,
                             after its shim died); a missing cgroup is no error
  features                   what this executor supports, as runtime-spec features JSON

--debug logs debug messages to stderr, among them the executor's create
phases and, for run, the time of each of its steps.

Commands other than run and exec exit with 3 when the container does not
exist, 1 on other errors, 2 on usage errors.
`

// runtimeMain is an OCI runtime CLI (runc-compatible in the subset above)
// over package oci, so the executor can be driven and benchmarked alone.
func runtimeMain(args []string) int {
	fs := flag.NewFlagSet("runtime", flag.ContinueOnError)
	root := fs.String("root", "/run/skiff/runtime", "state directory")
	debug := fs.Bool("debug", false, "log debug messages to stderr")
	fs.Usage = func() { fmt.Fprint(os.Stderr, runtimeUsage) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *debug {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e := &oci.Executor{StateDir: *root, NewCgroup: oci.NewCgroupfs(), Logger: log}
	ctx := context.Background()
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var code int
	var err error
	switch cmd {
	case "create":
		err = cliCreate(ctx, e, rest)
	case "start":
		err = withID(rest, func(id string) error { return e.Start(ctx, id) })
	case "state":
		err = withID(rest, func(id string) error {
			st, err := e.State(ctx, id)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st.State)
		})
	case "kill":
		err = cliKill(ctx, e, rest)
	case "delete":
		dfs := flag.NewFlagSet("delete", flag.ContinueOnError)
		force := dfs.Bool("force", false, "kill a running container first")
		if err = dfs.Parse(rest); err == nil {
			err = withID(dfs.Args(), func(id string) error { return e.Delete(ctx, id, *force) })
		}
	case "update":
		err = cliUpdate(ctx, e, rest)
	case "kill-cgroup":
		if len(rest) != 1 {
			err = errors.New("expects exactly one cgroup path")
		} else {
			err = killCgroup(ctx, rest[0])
		}
	case "features":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(e.Features())
	case "run":
		code, err = cliRun(ctx, e, log, rest)
	case "exec":
		code, err = cliExec(ctx, e, rest)
	default:
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "skiff-shim runtime %s: %v\n", cmd, err)
		if errdefs.IsNotFound(err) {
			return shim.RuntimeExitNotFound
		}
		return 1
	}
	return code
}

func withID(args []string, f func(string) error) error {
	if len(args) != 1 {
		return errors.New("expects exactly one container id")
	}
	return f(args[0])
}

func loadBundle(dir string) (oci.Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return oci.Bundle{}, err
	}
	b, err := os.ReadFile(filepath.Join(abs, "config.json"))
	if err != nil {
		return oci.Bundle{}, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return oci.Bundle{}, fmt.Errorf("decode %s/config.json: %w", abs, err)
	}
	return oci.Bundle{Path: abs, Spec: &spec}, nil
}

func cliCreate(ctx context.Context, e *oci.Executor, args []string) error {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	bundle := fs.String("bundle", ".", "bundle directory")
	consoleSocket := fs.String("console-socket", "", "unix socket to receive the pty master")
	pidFile := fs.String("pid-file", "", "write the init pid here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return withID(fs.Args(), func(id string) error {
		b, err := loadBundle(*bundle)
		if err != nil {
			return err
		}
		if b.Spec.Process != nil && b.Spec.Process.Terminal && *consoleSocket == "" {
			return errors.New("process.terminal needs --console-socket")
		}
		c, err := e.Create(ctx, id, b, oci.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
		if err != nil {
			return err
		}
		if c.Console != nil {
			err = sendConsole(*consoleSocket, c.Console)
			c.Console.Close()
			if err != nil {
				e.Delete(ctx, id, true)
				return err
			}
		}
		if *pidFile != "" {
			if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(c.Pid)), 0o644); err != nil {
				e.Delete(ctx, id, true)
				return err
			}
		}
		return nil
	})
}

// sendConsole passes the pty master to a --console-socket listener, as
// runc does.
func sendConsole(path string, console *os.File) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _, err = conn.(*net.UnixConn).WriteMsgUnix([]byte("console"), unix.UnixRights(int(console.Fd())), nil)
	return err
}

func parseSignal(s string) (syscall.Signal, error) {
	sig, ok := signame.Parse(s)
	if !ok {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	return sig, nil
}

func cliKill(ctx context.Context, e *oci.Executor, args []string) error {
	fs := flag.NewFlagSet("kill", flag.ContinueOnError)
	all := fs.Bool("all", false, "signal every process in the container's cgroup")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return errors.New("usage: kill [--all] ID [SIGNAL]")
	}
	sig := syscall.SIGTERM
	if fs.NArg() == 2 {
		var err error
		if sig, err = parseSignal(fs.Arg(1)); err != nil {
			return err
		}
	}
	return e.Kill(ctx, fs.Arg(0), sig, *all)
}

func cliRun(ctx context.Context, e *oci.Executor, log *slog.Logger, args []string) (int, error) {
	ph := phases.Start()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	bundle := fs.String("bundle", ".", "bundle directory")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if fs.NArg() != 1 {
		return 0, errors.New("expects exactly one container id")
	}
	id := fs.Arg(0)
	b, err := loadBundle(*bundle)
	if err != nil {
		return 0, err
	}
	ph.Done("load")
	c, err := e.Create(ctx, id, b, oci.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		return 0, err
	}
	ph.Done("create")
	defer func() {
		e.Delete(context.Background(), id, true)
		ph.Done("delete")
		ph.Log(ctx, log, "run phases", slog.String("id", id))
	}()
	if c.Console != nil {
		defer c.Console.Close()
		go io.Copy(c.Console, os.Stdin)
		go io.Copy(os.Stdout, c.Console)
	}
	// Forward the usual termination signals to the container.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)
	go func() {
		for s := range sigc {
			e.Kill(ctx, id, s.(syscall.Signal), false)
		}
	}()
	if err := e.Start(ctx, id); err != nil {
		return 0, err
	}
	ph.Done("start")
	st, err := c.Wait()
	if err != nil {
		return 0, err
	}
	ph.Done("wait")
	return st.Code, nil
}

func cliExec(ctx context.Context, e *oci.Executor, args []string) (int, error) {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	tty := fs.Bool("t", false, "allocate a terminal")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if fs.NArg() < 2 {
		return 0, errors.New("usage: exec [-t] ID CMD [ARG...]")
	}
	st, err := e.State(ctx, fs.Arg(0))
	if err != nil {
		return 0, err
	}
	b, err := loadBundle(st.Bundle)
	if err != nil {
		return 0, err
	}
	p := *b.Spec.Process
	p.Args = fs.Args()[1:]
	p.Terminal = *tty
	proc, err := e.Exec(ctx, fs.Arg(0), &p, oci.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		return 0, err
	}
	if proc.Console != nil {
		defer proc.Console.Close()
		go io.Copy(proc.Console, os.Stdin)
		go io.Copy(os.Stdout, proc.Console)
	}
	es, err := proc.Wait()
	if err != nil {
		return 0, err
	}
	return es.Code, nil
}
