package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// Hook phases, as the runtime spec names them.
const (
	hookPrestart        = "prestart"
	hookCreateRuntime   = "createRuntime"
	hookCreateContainer = "createContainer"
	hookStartContainer  = "startContainer"
	hookPoststart       = "poststart"
	hookPoststop        = "poststop"
)

// hookOutputMax bounds the output of a hook kept for its error message.
const hookOutputMax = 4 << 10

// hookWaitDelay is how long a hook's output pipes may stay open after the
// hook itself exited (a daemon it left behind holds them).
const hookWaitDelay = 2 * time.Second

// validateHooks checks what the runtime spec requires of every hook: an
// absolute path and a positive timeout when one is set.
func validateHooks(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	for _, p := range []struct {
		phase string
		hooks []specs.Hook
	}{
		//lint:ignore SA1019 prestart hooks are still run, as the spec asks
		{hookPrestart, h.Prestart},
		{hookCreateRuntime, h.CreateRuntime}, {hookCreateContainer, h.CreateContainer},
		{hookStartContainer, h.StartContainer}, {hookPoststart, h.Poststart}, {hookPoststop, h.Poststop},
	} {
		for i, hk := range p.hooks {
			if !filepath.IsAbs(hk.Path) {
				return errdefs.InvalidArgument("%s hook %d: path %q is not absolute", p.phase, i, hk.Path)
			}
			if hk.Timeout != nil && *hk.Timeout <= 0 {
				return errdefs.InvalidArgument("%s hook %s: timeout %d is not positive", p.phase, hk.Path, *hk.Timeout)
			}
		}
	}
	return nil
}

// hasHooks reports whether h has any hook at all.
func hasHooks(h *specs.Hooks) bool {
	//lint:ignore SA1019 prestart hooks are still run, as the spec asks
	return h != nil && len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer)+
		len(h.StartContainer)+len(h.Poststart)+len(h.Poststop) > 0
}

// runHooks runs the hooks of one phase in order and stops at the first
// that fails. Each gets the container's state as JSON on its stdin.
func runHooks(ctx context.Context, phase string, hooks []specs.Hook, st *specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	state, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state for %s hooks: %w", phase, err)
	}
	for _, h := range hooks {
		if err := runHook(ctx, h, state); err != nil {
			return fmt.Errorf("%s hook %s: %w", phase, h.Path, err)
		}
	}
	return nil
}

// runHook runs one hook with exactly its own args and environment (none
// inherited), in a process group of its own so that a timeout kills what
// it started too. An exit status other than 0, a signal, or the end of
// its timeout (or of ctx) is a failure; the error carries its output.
func runHook(ctx context.Context, h specs.Hook, state []byte) error {
	var timeout time.Duration
	if h.Timeout != nil {
		timeout = time.Duration(*h.Timeout) * time.Second
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	env := h.Env
	if env == nil {
		env = []string{} // nil would hand the hook our environment
	}
	out := &cappedBuffer{max: hookOutputMax}
	cmd := exec.CommandContext(ctx, h.Path)
	cmd.Args = args
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(state)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = hookWaitDelay
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if cmd.Process != nil {
		// Whatever the hook left in its group goes with it.
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
	switch {
	case timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("killed after its timeout of %v", timeout)
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if o := strings.TrimSpace(out.String()); o != "" {
		return fmt.Errorf("%w; output: %s", err, o)
	}
	return err
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room > 0 {
		if len(p) > room {
			c.b.Write(p[:room])
			c.b.WriteString("…")
		} else {
			c.b.Write(p)
		}
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}
