package shim

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

// TestWireErrorKinds checks that every error kind the executor and the shim
// return reaches the client as the same kind, so the CRI edge maps it to
// the right gRPC code (Unimplemented reached the kubelet as Unknown once).
func TestWireErrorKinds(t *testing.T) {
	for _, kind := range []error{
		errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
		errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrUnimplemented,
		errdefs.ErrResourceExhausted, context.DeadlineExceeded,
	} {
		t.Run(kind.Error(), func(t *testing.T) {
			err := fromWire(toWire(fmt.Errorf("container c1: %w", kind)))
			if !errors.Is(err, kind) {
				t.Fatalf("%v crossed the wire as %v (%#v)", kind, err, err)
			}
		})
	}
	if err := fromWire(toWire(errors.New("plain"))); errors.Unwrap(err) != nil {
		t.Errorf("a plain error gained a kind: %v", errors.Unwrap(err))
	}
}
