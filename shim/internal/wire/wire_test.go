package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

// TestErrorKinds checks that every error kind the executor and the shim
// return reaches the client as the same kind, so the CRI edge maps it to
// the right gRPC code (Unimplemented reached the kubelet as Unknown once).
func TestErrorKinds(t *testing.T) {
	for _, kind := range []error{
		errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
		errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrUnimplemented,
		errdefs.ErrResourceExhausted, context.DeadlineExceeded,
	} {
		t.Run(kind.Error(), func(t *testing.T) {
			err := FromWire(ToWire(fmt.Errorf("container c1: %w", kind)))
			if !errors.Is(err, kind) {
				t.Fatalf("%v crossed the wire as %v (%#v)", kind, err, err)
			}
		})
	}
	if err := FromWire(ToWire(errors.New("plain"))); errors.Unwrap(err) != nil {
		t.Errorf("a plain error gained a kind: %v", errors.Unwrap(err))
	}
}

func TestDecodeBody(t *testing.T) {
	var v struct{ ID string }
	for _, b := range []string{"", "null"} {
		if err := Decode([]byte(b), &v, OpCreate); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "create request without body") {
			t.Errorf("body %q: %v, want invalid argument %q", b, err, "create request without body")
		}
	}
	if err := Decode([]byte(`{"ID":1}`), &v, OpCreate); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("undecodable body: %v, want invalid argument", err)
	}
	if err := Decode([]byte(`{"ID":"c1"}`), &v, OpCreate); err != nil || v.ID != "c1" {
		t.Errorf("body: %v, %+v", err, v)
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	big := bytes.Repeat([]byte("x"), MaxFrame+10)
	if err := fw.Write(FrameStdout, big); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(FrameResize, EncodeSize(80, 24)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for range 2 {
		typ, p, err := ReadFrame(&buf, nil)
		if err != nil || typ != FrameStdout {
			t.Fatalf("frame %q: %v", typ, err)
		}
		got = append(got, p...)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("a payload over MaxFrame came back as %d bytes, want %d", len(got), len(big))
	}
	typ, p, err := ReadFrame(&buf, nil)
	if w, h, ok := DecodeSize(p); err != nil || typ != FrameResize || !ok || w != 80 || h != 24 {
		t.Errorf("resize frame %q %v: %dx%d %v", typ, err, w, h, ok)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{FrameStdout, 0, 0, 0, 9, 'a'}), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v, want unexpected EOF", err)
	}
}

func TestReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader(strings.Repeat("a", 100)+"\n"+strings.Repeat("b", 200)+"\n"), 16)
	if line, err := ReadLine(br, 150); err != nil || len(line) != 101 {
		t.Fatalf("line of 101 bytes: %d, %v", len(line), err)
	}
	if _, err := ReadLine(br, 150); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("line over the limit: %v, want invalid argument", err)
	}
}
