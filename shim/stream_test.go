package shim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/shim"
)

// syncBuffer is a bytes.Buffer safe for the stream's writer goroutine and
// the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startSleeper(t *testing.T, c *shim.Client, id string) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{ID: id, Spec: spec("sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestExecStream(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	startSleeper(t, c, "box")
	tests := []struct {
		name           string
		req            shim.ExecRequest
		stdin          string
		stdout, stderr string
		code           int
	}{
		{
			name:   "stdin stdout stderr code",
			req:    shim.ExecRequest{ID: "box", Cmd: []string{"sh", "-c", "read x; echo got $x; echo err >&2; exit 5"}},
			stdin:  "hello\n",
			stdout: "got hello\n", stderr: "err\n", code: 5,
		},
		{
			name:   "stdin eof",
			req:    shim.ExecRequest{ID: "box", Cmd: []string{"sh", "-c", "cat; echo end"}},
			stdin:  "a\nb\n",
			stdout: "a\nb\nend\n",
		},
		{
			name:   "tty with size",
			req:    shim.ExecRequest{ID: "box", Cmd: []string{"sh", "-c", "stty size; [ -t 0 ] && echo tty"}, Tty: true, Size: &shim.TermSize{Width: 100, Height: 40}},
			stdout: "40 100\r\ntty\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut syncBuffer
			sio := shim.StreamIO{Stdout: &out, Stderr: &errOut}
			if tc.stdin != "" {
				sio.Stdin = strings.NewReader(tc.stdin)
			}
			code, err := c.Exec(ctx, tc.req, sio)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.stdout || errOut.String() != tc.stderr || code != tc.code {
				t.Errorf("got %q %q %d, want %q %q %d", out.String(), errOut.String(), code, tc.stdout, tc.stderr, tc.code)
			}
		})
	}
	t.Run("cancel kills", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := c.Exec(cctx, shim.ExecRequest{ID: "box", Cmd: []string{"sleep", "30"}}, shim.StreamIO{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v", err)
		}
	})
	if _, err := c.Exec(ctx, shim.ExecRequest{ID: "nope", Cmd: []string{"true"}}, shim.StreamIO{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("exec in unknown container: %v", err)
	}
}

func TestAttach(t *testing.T) {
	c, _ := serve(t)
	ctx := ctxT(t)
	logPath := filepath.Join(t.TempDir(), "a.log")
	_, err := c.CreateContainer(ctx, shim.CreateRequest{
		ID:      "echo",
		Spec:    spec("sh", "-c", `while read l; do echo "echo:$l"; echo "err:$l" >&2; done; echo bye`),
		LogPath: logPath, Stdin: true, StdinOnce: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	// A second, output-only session sees the same output.
	var watchOut syncBuffer
	watchDone := make(chan error, 1)
	go func() { watchDone <- c.Attach(ctx, "echo", shim.StreamIO{Stdout: &watchOut}) }()

	pr, pw := io.Pipe()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- c.Attach(ctx, "echo", shim.StreamIO{Stdin: pr, Stdout: &out, Stderr: &errOut}) }()
	io.WriteString(pw, "one\n")
	waitUntil(t, func() bool { return strings.Contains(out.String(), "echo:one\n") })
	io.WriteString(pw, "two\n")
	waitUntil(t, func() bool { return strings.Contains(out.String(), "echo:two\n") })
	// End of input with StdinOnce closes the container's stdin: it exits.
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-watchDone; err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx, "echo")
	if err != nil || st.ExitCode != 0 {
		t.Fatalf("wait: %+v %v", st, err)
	}
	if got, want := out.String(), "echo:one\necho:two\nbye\n"; got != want {
		t.Errorf("attach stdout %q, want %q", got, want)
	}
	if got, want := errOut.String(), "err:one\nerr:two\n"; got != want {
		t.Errorf("attach stderr %q, want %q", got, want)
	}
	if got := watchOut.String(); !strings.HasSuffix(got, "bye\n") {
		t.Errorf("second session saw %q", got)
	}
	if err := c.Attach(ctx, "echo", shim.StreamIO{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("attach to exited container: %v", err)
	}
	var lines []string
	for _, r := range readRecords(t, logPath) {
		lines = append(lines, string(r.Stream)+":"+string(r.Text))
	}
	if len(lines) != 5 {
		t.Errorf("log %q", lines)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
