package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
)

// cappedBuffer keeps the first max bytes written and drops the rest, so a
// chatty exec cannot grow the shim without bound.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (d *daemon) execSync(ctx context.Context, req *shim.ExecSyncRequest) (shim.ExecSyncResult, error) {
	var res shim.ExecSyncResult
	c, err := d.get(req.ID)
	if err != nil {
		return res, err
	}
	if st := c.snapshot().Status; st != shim.StatusRunning {
		return res, errdefs.FailedPrecondition("container %q is %s, not running", req.ID, st)
	}
	if len(req.Cmd) == 0 {
		return res, errdefs.InvalidArgument("exec in container %q: empty command", req.ID)
	}
	var proc specs.Process
	if req.Process != nil {
		proc = *req.Process
	} else {
		proc = *c.process
	}
	proc.Args = req.Cmd
	proc.Terminal = false
	proc.ConsoleSize = nil

	p, err := newPipes(false, false)
	if err != nil {
		return res, fmt.Errorf("exec in container %q: %w", req.ID, err)
	}
	xp, pidfd, err := d.reaper.spawn(func() (Process, error) {
		return d.cfg.Runtime.Exec(ctx, req.ID, &proc, p.child)
	})
	p.closeChild()
	if err != nil {
		p.closeAll()
		return res, fmt.Errorf("exec in container %q: %w", req.ID, err)
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	type waited struct {
		es  ExitStatus
		err error
	}
	exitc := make(chan waited, 1)
	go func() {
		es, err := xp.Wait()
		d.reaper.release(xp.Pid())
		exitc <- waited{es, err}
	}()
	outs := []*cappedBuffer{{max: shim.MaxExecOutput}, {max: shim.MaxExecOutput}}
	var wg sync.WaitGroup
	for i, r := range p.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(outs[i], r)
		}()
	}
	ioDone := make(chan struct{})
	go func() { wg.Wait(); close(ioDone) }()
	defer p.closeAll()

	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var w waited
	var failure error
	select {
	case w = <-exitc:
	case <-timeout:
		failure = fmt.Errorf("exec %q in container %q timed out after %s: %w", req.Cmd[0], req.ID, req.Timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		failure = ctx.Err()
	}
	if failure != nil {
		if pidfd >= 0 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		}
		<-exitc
		return res, failure
	}
	select {
	case <-ioDone:
	case <-time.After(ioDrainTimeout):
		// A background child of the command holds the pipes; answer with
		// what arrived. closeAll (deferred) stops the copiers.
	}
	p.closeAll()
	<-ioDone
	res.Stdout = outs[0].buf.Bytes()
	res.Stderr = outs[1].buf.Bytes()
	if w.err != nil {
		return res, fmt.Errorf("exec in container %q: wait: %w", req.ID, w.err)
	}
	res.ExitCode = w.es.Code
	return res, nil
}
