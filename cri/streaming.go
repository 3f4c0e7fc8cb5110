package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/skiffcri/skiff/errdefs"
)

// StreamServer serves the kubelet's exec, attach and port-forward streams
// over HTTP; the CRI calls only hand out URLs to it.
type StreamServer struct {
	srv  streaming.Server
	http *http.Server
	lis  net.Listener
}

// NewStreamServer listens on addr (host:port, port 0 picks one) for the
// streams of s.
func (s *Server) NewStreamServer(addr string) (*StreamServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stream server: listen %s: %w", addr, err)
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = lis.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: cfg.Addr}
	srv, err := streaming.NewServer(cfg, streamRuntime{s})
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("stream server: %w", err)
	}
	s.streams = srv
	return &StreamServer{srv: srv, lis: lis, http: &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}}, nil
}

// Serve serves streams until Close.
func (ss *StreamServer) Serve() error {
	if err := ss.http.Serve(ss.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server and its open streams.
func (ss *StreamServer) Close() error { return ss.http.Close() }

// Addr is where the server listens.
func (ss *StreamServer) Addr() string { return ss.lis.Addr().String() }

// Exec hands out the URL of an interactive exec session.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.streams == nil {
		return nil, errdefs.Unimplemented("exec: no stream server")
	}
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if st, err := s.containerState(ctx, rec); err != nil {
		return nil, err
	} else if st.Status != StateRunning {
		return nil, errdefs.FailedPrecondition("exec in container %s: it is %s, not running", rec.ID, st.Status)
	}
	req.ContainerId = rec.ID
	return s.streams.GetExec(req)
}

// Attach hands out the URL of a session attached to a container's stdio.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.streams == nil {
		return nil, errdefs.Unimplemented("attach: no stream server")
	}
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if st, err := s.containerState(ctx, rec); err != nil {
		return nil, err
	} else if st.Status != StateRunning {
		return nil, errdefs.FailedPrecondition("attach to container %s: it is %s, not running", rec.ID, st.Status)
	}
	req.ContainerId = rec.ID
	return s.streams.GetAttach(req)
}

// PortForward hands out the URL for forwarding ports into a pod.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.streams == nil {
		return nil, errdefs.Unimplemented("port forward: no stream server")
	}
	rec, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if rec.State != podReady {
		return nil, errdefs.FailedPrecondition("port forward to pod %s: %v", rec.ID, errPodNotReady)
	}
	req.PodSandboxId = rec.ID
	return s.streams.GetPortForward(req)
}

// streamRuntime runs the streams the stream server accepted.
type streamRuntime struct{ s *Server }

// exitError carries a non-zero exit code to the stream server, which
// reports it to the client (it checks for k8s.io/utils/exec.ExitError).
type exitError struct{ code int }

func (e exitError) Error() string   { return fmt.Sprintf("command exited with code %d", e.code) }
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return e.code }

func resizeChan(ctx context.Context, in <-chan remotecommandserver.TerminalSize) <-chan TermSize {
	if in == nil {
		return nil
	}
	out := make(chan TermSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- TermSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	rec, err := r.s.findContainer(id)
	if err != nil {
		return err
	}
	shim, err := r.s.shims.Connect(ctx, rec.PodID)
	if err != nil {
		return err
	}
	defer shim.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	code, err := shim.Exec(ctx, rec.ID, cmd, Stdio{Stdin: in, Stdout: out, Stderr: errw, Tty: tty, Resize: resizeChan(ctx, resize)})
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{int(code)}
	}
	return nil
}

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	rec, err := r.s.findContainer(id)
	if err != nil {
		return err
	}
	shim, err := r.s.shims.Connect(ctx, rec.PodID)
	if err != nil {
		return err
	}
	defer shim.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return shim.Attach(ctx, rec.ID, Stdio{Stdin: in, Stdout: out, Stderr: errw, Tty: tty, Resize: resizeChan(ctx, resize)})
}

// PortForward connects to the port on the pod's loopback from inside its
// network namespace and copies both ways until either side closes.
func (r streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	rec, err := r.s.findPod(podID)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return errdefs.InvalidArgument("port %d is out of range", port)
	}
	netns := rec.Namespaces.Net
	conn, err := dialInNetNS(ctx, netns, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("port forward to pod %s port %d: %w", podID, port, err)
	}
	defer conn.Close()
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return err
}

// dialInNetNS dials addr from inside the network namespace at path ("" is
// the host's). The socket keeps its namespace after creation, so the dial
// runs on a locked thread that is thrown away afterwards rather than
// returned to the scheduler in a foreign namespace.
func dialInNetNS(ctx context.Context, path, addr string) (net.Conn, error) {
	if path == "" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open netns %s: %w", path, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ch <- result{err: fmt.Errorf("unshare fs: %w", err)}
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", path, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
