package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Interactive exec and attach turn their connection into a stream of
// frames after the request line: one type byte, a big-endian uint32 length,
// then the payload.
//
//	client → shim: FrameStdin (data), FrameStdinClose, FrameResize (uint16 width, uint16 height)
//	shim → client: FrameStdout, FrameStderr (data), FrameExit (an ExitResult, last frame)
const (
	FrameStdin      = 'i'
	FrameStdinClose = 'c'
	FrameResize     = 'r'
	FrameStdout     = 'o'
	FrameStderr     = 'e'
	FrameExit       = 'x'
)

// MaxFrame bounds one frame's payload.
const MaxFrame = 1 << 20

// ExitResult is the JSON payload of the FrameExit frame.
type ExitResult struct {
	Error    *Error `json:"error,omitempty"`
	ExitCode int    `json:"exitCode"`
}

// FrameWriter serialises frames from several goroutines onto one writer.
type FrameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	hdr [5]byte
}

// NewFrameWriter returns a FrameWriter on w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write sends p as frames of typ, split at MaxFrame.
func (f *FrameWriter) Write(typ byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		n := min(len(p), MaxFrame)
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

// ReadFrame reads one frame into buf (grown as needed) and returns its type
// and payload.
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
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

// EncodeSize is the payload of a FrameResize frame.
func EncodeSize(width, height uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return b[:]
}

// DecodeSize parses the payload of a FrameResize frame.
func DecodeSize(b []byte) (width, height uint16, ok bool) {
	if len(b) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[:2]), binary.BigEndian.Uint16(b[2:]), true
}
