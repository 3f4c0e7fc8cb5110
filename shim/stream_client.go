package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim/internal/wire"
)

// Exec runs an interactive process in a running container with its stdio
// connected to sio, and returns its exit code once it exited and its output
// was written. Cancelling ctx (or the caller going away) kills the process.
// With Tty the process's output arrives on sio.Stdout and sio.Resize
// changes its terminal size.
func (c *Client) Exec(ctx context.Context, req ExecRequest, sio StreamIO) (int, error) {
	if sio.Stdin != nil {
		req.Stdin = true
	}
	body, err := wire.Encode(&req)
	if err != nil {
		return 0, err
	}
	return c.stream(ctx, &wire.Request{Op: wire.OpExec, ExecStream: body}, sio)
}

// Attach connects sio to the container's own stdio (output from now on;
// the past is in the log) until the container exits, ctx ends or sio.Stdin
// ends. With StdinOnce on the container, the end of sio.Stdin closes the
// container's stdin.
func (c *Client) Attach(ctx context.Context, id string, sio StreamIO) error {
	body, err := wire.Encode(&AttachRequest{ID: id, Stdin: sio.Stdin != nil})
	if err != nil {
		return err
	}
	_, err = c.stream(ctx, &wire.Request{Op: wire.OpAttach, Attach: body}, sio)
	return err
}

func (c *Client) stream(ctx context.Context, req *wire.Request, sio StreamIO) (int, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, errdefs.Unavailable("shim at %s: %v", c.sock, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return 0, c.ioErr(ctx, req, err)
	}
	fw := wire.NewFrameWriter(conn)
	done := make(chan struct{})
	defer close(done)
	if sio.Stdin != nil {
		// This goroutine may outlive the call while blocked in Read; its
		// next write then fails on the closed connection and it ends.
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := sio.Stdin.Read(buf)
				if n > 0 && fw.Write(wire.FrameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					fw.Write(wire.FrameStdinClose, nil)
					return
				}
			}
		}()
	}
	if sio.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-sio.Resize:
					if !ok || fw.Write(wire.FrameResize, wire.EncodeSize(sz.Width, sz.Height)) != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	br := bufio.NewReader(conn)
	var buf []byte
	for {
		typ, p, err := wire.ReadFrame(br, buf)
		if err != nil {
			return 0, c.ioErr(ctx, req, err)
		}
		buf = p[:0]
		switch typ {
		case wire.FrameStdout:
			if sio.Stdout != nil {
				sio.Stdout.Write(p)
			}
		case wire.FrameStderr:
			if sio.Stderr != nil {
				sio.Stderr.Write(p)
			}
		case wire.FrameExit:
			var res wire.ExitResult
			if err := json.Unmarshal(p, &res); err != nil {
				return 0, fmt.Errorf("shim %s: bad exit frame: %w", c.sock, err)
			}
			if res.Error != nil {
				return 0, wire.FromWire(res.Error)
			}
			return res.ExitCode, nil
		default:
			return 0, fmt.Errorf("shim %s: unknown frame %q", c.sock, typ)
		}
	}
}
