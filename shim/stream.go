package shim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Interactive exec and attach turn their connection into a stream of
// frames after the request line: one type byte, a big-endian uint32 length,
// then the payload.
//
//	client → shim: frameStdin (data), frameStdinClose, frameResize (uint16 width, uint16 height)
//	shim → client: frameStdout, frameStderr (data), frameExit (a JSON response, last frame)
const (
	frameStdin      = 'i'
	frameStdinClose = 'c'
	frameResize     = 'r'
	frameStdout     = 'o'
	frameStderr     = 'e'
	frameExit       = 'x'
)

// maxFrame bounds one frame's payload.
const maxFrame = 1 << 20

// ExecRequest starts an interactive process in a running container.
type ExecRequest struct {
	ID  string   `json:"id"`
	Cmd []string `json:"cmd"`
	// Process, when set, is the full process spec; Cmd replaces its Args.
	// When nil the container's own process spec is used.
	Process *specs.Process `json:"process,omitempty"`
	// Tty gives the process a terminal; its output comes as stdout.
	Tty bool `json:"tty,omitempty"`
	// Stdin connects the process's stdin to the stream (else /dev/null).
	Stdin bool `json:"stdin,omitempty"`
	// Size is the terminal's initial size, if known.
	Size *TermSize `json:"size,omitempty"`
}

// AttachRequest connects a stream to a container's own stdio.
type AttachRequest struct {
	ID string `json:"id"`
	// Stdin forwards the stream's input to the container's stdin (it must
	// have been created with Stdin).
	Stdin bool `json:"stdin,omitempty"`
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// StreamIO are the caller's ends of an interactive exec or attach. Nil
// writers drop that output; a nil Stdin sends none.
type StreamIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan TermSize
}

// exitResult is the payload of the frameExit frame.
type exitResult struct {
	Error    *wireError `json:"error,omitempty"`
	ExitCode int        `json:"exitCode"`
}

// frameWriter serialises frames from several goroutines onto one writer.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	hdr [5]byte
}

func (f *frameWriter) write(typ byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		n := min(len(p), maxFrame)
		f.hdr[0] = typ
		binary.BigEndian.PutUint32(f.hdr[1:], uint32(n))
		if _, err := f.w.Write(f.hdr[:]); err != nil {
			return err
		}
		if _, err := f.w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// readFrame reads one frame into buf (grown as needed) and returns its type
// and payload.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("shim stream: frame of %d bytes", n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

func encodeSize(s TermSize) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], s.Width)
	binary.BigEndian.PutUint16(b[2:], s.Height)
	return b[:]
}

func decodeSize(b []byte) (TermSize, bool) {
	if len(b) != 4 {
		return TermSize{}, false
	}
	return TermSize{Width: binary.BigEndian.Uint16(b[:2]), Height: binary.BigEndian.Uint16(b[2:])}, true
}
