package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim/crilog"
	"github.com/skiffcri/skiff/shim/internal/wire"
)

// pipes are the shim's and the child's ends of one process's stdio.
type pipes struct {
	child   Stdio
	readers []*os.File
	streams []crilog.Stream
	stdin   *os.File // shim's write end, if any
}

func (p *pipes) closeChild() {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{p.child.Stdin, p.child.Stdout, p.child.Stderr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

func (p *pipes) closeAll() {
	p.closeChild()
	for _, r := range p.readers {
		r.Close()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
}

// newPipes makes the stdio pipes of a process; with tty there are none, the
// Runtime returns a console instead (see useConsole).
func newPipes(stdin, tty bool) (*pipes, error) {
	p := &pipes{}
	if tty {
		return p, nil
	}
	for _, s := range []crilog.Stream{crilog.Stdout, crilog.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, err
		}
		p.readers = append(p.readers, r)
		p.streams = append(p.streams, s)
		if s == crilog.Stdout {
			p.child.Stdout = w
		} else {
			p.child.Stderr = w
		}
	}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, err
		}
		p.child.Stdin = r
		p.stdin = w
	}
	return p, nil
}

// useConsole takes the terminal master the Runtime allocated as the
// output (logged as stdout) and, with stdin, as the input.
func (p *pipes) useConsole(proc Process, stdin bool) error {
	console := proc.Console()
	if console == nil {
		return errors.New("runtime returned no console for a tty container")
	}
	p.readers = []*os.File{console}
	p.streams = []crilog.Stream{crilog.Stdout}
	if stdin {
		p.stdin = console
	}
	return nil
}

// copyOutput starts one copier per output stream; when all have hit EOF
// the log is closed and ioDone closed.
func (d *daemon) copyOutput(c *container, p *pipes) {
	var wg sync.WaitGroup
	for i, r := range p.readers {
		stream := p.streams[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.mu.Lock()
			w := c.log
			c.mu.Unlock()
			typ := byte(wire.FrameStdout)
			if stream == crilog.Stderr {
				typ = wire.FrameStderr
			}
			in := io.TeeReader(r, fanout{c: c, typ: typ})
			var err error
			if w != nil {
				err = w.Copy(stream, in)
			} else {
				_, err = io.Copy(io.Discard, in)
				if errors.Is(err, unix.EIO) {
					err = nil // pty master after the last slave closed
				}
			}
			if err != nil {
				d.cfg.Logger.Warn("container output", "id", c.id, "stream", stream, "error", err)
			}
		}()
	}
	go func() {
		wg.Wait()
		for _, r := range p.readers {
			r.Close()
		}
		c.closeLog()
		close(c.ioDone)
	}()
}

func (c *container) closeLog() {
	c.mu.Lock()
	w := c.log
	c.log = nil
	c.mu.Unlock()
	if w != nil {
		w.Close()
	}
}

func (d *daemon) reopenLog(id string) error {
	c, err := d.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	w := c.log
	c.mu.Unlock()
	if w == nil {
		if c.logPath == "" {
			return errdefs.FailedPrecondition("container %q has no log path", id)
		}
		return errdefs.FailedPrecondition("container %q is not running: its output is closed", id)
	}
	if err := w.Reopen(); err != nil {
		return fmt.Errorf("reopen log of container %q: %w", id, err)
	}
	return nil
}
