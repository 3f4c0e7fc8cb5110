package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
	"github.com/skiffcri/skiff/shim/internal/wire"
)

// attachQueue is how many output chunks may wait for a slow attach client
// before it is cut off; the container's output (and its log) never waits
// for an attach client.
const attachQueue = 256

// attacher is one attach session receiving a container's output.
type attacher struct {
	ch   chan outChunk
	once sync.Once
	gone chan struct{}
}

type outChunk struct {
	typ  byte
	data []byte
}

func (a *attacher) drop() { a.once.Do(func() { close(a.gone) }) }

// fanout copies a container's output stream to its attach sessions.
type fanout struct {
	c   *container
	typ byte
}

func (f fanout) Write(p []byte) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if len(f.c.attachers) == 0 {
		return len(p), nil
	}
	data := append([]byte(nil), p...)
	for a := range f.c.attachers {
		select {
		case a.ch <- outChunk{f.typ, data}:
		default:
			delete(f.c.attachers, a)
			a.drop()
		}
	}
	return len(p), nil
}

// serveStream runs an interactive exec or attach on conn; br holds what was
// read after the request line (frames may follow it immediately).
func (d *daemon) serveStream(ctx context.Context, conn net.Conn, br *bufio.Reader, req *wire.Request) {
	fw := wire.NewFrameWriter(conn)
	var code int
	var err error
	switch req.Op {
	case wire.OpExec:
		var er shim.ExecRequest
		if err = wire.Decode(req.ExecStream, &er, req.Op); err != nil {
			break
		}
		code, err = d.execStream(ctx, &er, br, fw)
	case wire.OpAttach:
		var ar shim.AttachRequest
		if err = wire.Decode(req.Attach, &ar, req.Op); err != nil {
			break
		}
		err = d.attach(ctx, &ar, br, fw)
	}
	res := wire.ExitResult{Error: wire.ToWire(err), ExitCode: code}
	b, _ := json.Marshal(&res)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fw.Write(wire.FrameExit, b)
}

// pumpOutput copies r to the client as frames of typ until r ends.
func pumpOutput(r io.Reader, typ byte, fw *wire.FrameWriter) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if fw.Write(typ, buf[:n]) != nil {
				// The client is gone; keep draining so the process
				// does not block on a full pipe.
				io.Copy(io.Discard, r)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// readInput handles the client's frames until the client closes the
// stream; it then calls done.
func readInput(br *bufio.Reader, stdin io.WriteCloser, resize func(shim.TermSize), stdinClosed func()) {
	var buf []byte
	for {
		typ, p, err := wire.ReadFrame(br, buf)
		if err != nil {
			return
		}
		buf = p[:0]
		switch typ {
		case wire.FrameStdin:
			if stdin != nil {
				stdin.Write(p)
			}
		case wire.FrameStdinClose:
			if stdinClosed != nil {
				stdinClosed()
			}
		case wire.FrameResize:
			if w, h, ok := wire.DecodeSize(p); ok && resize != nil {
				resize(shim.TermSize{Width: w, Height: h})
			}
		}
	}
}

func setSize(console *os.File, sz shim.TermSize) {
	if console == nil || sz.Width == 0 || sz.Height == 0 {
		return
	}
	unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: sz.Width, Row: sz.Height})
}

// execStream runs an interactive process; it returns its exit code once
// the process exited and its output reached the client. A client that goes
// away kills the process.
func (d *daemon) execStream(ctx context.Context, req *shim.ExecRequest, br *bufio.Reader, fw *wire.FrameWriter) (int, error) {
	c, err := d.get(req.ID)
	if err != nil {
		return 0, err
	}
	if st := c.snapshot().Status; st != shim.StatusRunning {
		return 0, errdefs.FailedPrecondition("container %q is %s, not running", req.ID, st)
	}
	if len(req.Cmd) == 0 {
		return 0, errdefs.InvalidArgument("exec in container %q: empty command", req.ID)
	}
	proc := *c.process
	if req.Process != nil {
		proc = *req.Process
	}
	proc.Args = req.Cmd
	proc.Terminal = req.Tty
	proc.ConsoleSize = nil
	if req.Tty && req.Size != nil && req.Size.Width > 0 && req.Size.Height > 0 {
		// Sized by the init before exec: a size set from here after the
		// spawn would race with the process's first look at its terminal.
		proc.ConsoleSize = &specs.Box{Width: uint(req.Size.Width), Height: uint(req.Size.Height)}
	}
	p, err := newPipes(req.Stdin, req.Tty)
	if err != nil {
		return 0, fmt.Errorf("exec in container %q: %w", req.ID, err)
	}
	xp, pidfd, err := d.reaper.spawn(func() (Process, error) {
		return d.cfg.Runtime.Exec(ctx, req.ID, &proc, p.child)
	})
	p.closeChild()
	if err == nil && req.Tty {
		if err = p.useConsole(xp, req.Stdin); err != nil {
			if pidfd >= 0 {
				unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			}
			xp.Wait()
			d.reaper.release(xp.Pid())
		}
	}
	if err != nil {
		p.closeAll()
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return 0, fmt.Errorf("exec in container %q: %w", req.ID, err)
	}
	defer func() {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}()
	var console *os.File
	if req.Tty {
		console = p.readers[0]
	}
	exitc := make(chan ExitStatus, 1)
	go func() {
		es, werr := xp.Wait()
		d.reaper.release(xp.Pid())
		if werr != nil {
			es = ExitStatus{Code: 255}
		}
		exitc <- es
	}()
	var wg sync.WaitGroup
	for i, r := range p.readers {
		typ := byte(wire.FrameStdout)
		if p.streams[i] == "stderr" {
			typ = wire.FrameStderr
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pumpOutput(r, typ, fw)
		}()
	}
	outDone := make(chan struct{})
	go func() { wg.Wait(); close(outDone) }()

	clientGone := make(chan struct{})
	var stdinOnce sync.Once
	closeStdin := func() {
		stdinOnce.Do(func() {
			if p.stdin != nil && !req.Tty {
				p.stdin.Close()
			}
		})
	}
	go func() {
		var stdin io.WriteCloser
		if p.stdin != nil {
			stdin = p.stdin
		}
		readInput(br, stdin, func(sz shim.TermSize) { setSize(console, sz) }, closeStdin)
		close(clientGone)
	}()

	var es ExitStatus
	select {
	case es = <-exitc:
	case <-clientGone:
		if pidfd >= 0 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		}
		<-exitc
		p.closeAll()
		<-outDone
		return 0, errors.New("exec client went away")
	}
	select {
	case <-outDone:
	case <-time.After(ioDrainTimeout):
	}
	closeStdin()
	p.closeAll()
	<-outDone
	return es.Code, nil
}

// attach streams a container's output to the client and, with Stdin, the
// client's input to the container, until the container exits or the client
// goes away.
func (d *daemon) attach(ctx context.Context, req *shim.AttachRequest, br *bufio.Reader, fw *wire.FrameWriter) error {
	c, err := d.get(req.ID)
	if err != nil {
		return err
	}
	a := &attacher{ch: make(chan outChunk, attachQueue), gone: make(chan struct{})}
	c.mu.Lock()
	if c.status == shim.StatusExited {
		c.mu.Unlock()
		return errdefs.FailedPrecondition("container %q has exited", req.ID)
	}
	if c.attachers == nil {
		c.attachers = make(map[*attacher]bool)
	}
	c.attachers[a] = true
	stdin := c.stdinWrite
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.attachers, a)
		c.mu.Unlock()
	}()
	if req.Stdin && stdin == nil {
		return errdefs.FailedPrecondition("container %q was created without stdin", req.ID)
	}

	var console *os.File
	if c.tty && len(c.readers) > 0 {
		console = c.readers[0]
	}
	clientGone := make(chan struct{})
	go func() {
		var in io.WriteCloser
		if req.Stdin {
			in = stdin
		}
		readInput(br, in, func(sz shim.TermSize) { setSize(console, sz) }, func() {
			if req.Stdin && c.stdinOnce {
				d.closeStdin(c)
			}
		})
		close(clientGone)
	}()
	writeErr := make(chan struct{})
	flush := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case ch := <-a.ch:
				if fw.Write(ch.typ, ch.data) != nil {
					close(writeErr)
					return
				}
			case <-flush:
				// The output has ended: send what is queued, then stop.
				for {
					select {
					case ch := <-a.ch:
						if fw.Write(ch.typ, ch.data) != nil {
							return
						}
					default:
						return
					}
				}
			case <-a.gone:
				return
			}
		}
	}()
	defer a.drop()
	select {
	case <-c.ioDone:
		close(flush)
		<-writerDone
		<-c.exited
		return nil
	case <-clientGone:
	case <-writeErr:
	case <-a.gone:
		return errdefs.Unavailable("attach client too slow; output dropped")
	case <-ctx.Done():
	}
	if req.Stdin && c.stdinOnce {
		d.closeStdin(c)
	}
	return nil
}

// closeStdin closes the container's stdin (StdinOnce after the first
// attach session ended).
func (d *daemon) closeStdin(c *container) {
	c.mu.Lock()
	w := c.stdinWrite
	c.stdinWrite = nil
	c.mu.Unlock()
	if w != nil && !c.tty {
		w.Close()
	}
}
