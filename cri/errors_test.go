package cri

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffcri/skiff/errdefs"
)

func TestToGRPC(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{errdefs.NotFound("image %q", "x"), codes.NotFound},
		{fmt.Errorf("pull: %w", errdefs.InvalidArgument("bad ref")), codes.InvalidArgument},
		{errdefs.AlreadyExists("pod"), codes.AlreadyExists},
		{errdefs.FailedPrecondition("not running"), codes.FailedPrecondition},
		{errdefs.Unimplemented("streams"), codes.Unimplemented},
		{errdefs.ResourceExhausted("disk"), codes.ResourceExhausted},
		{fmt.Errorf("pull: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{status.Error(codes.Aborted, "kept"), codes.Aborted},
		{fmt.Errorf("plain"), codes.Unknown},
	} {
		if got := status.Code(toGRPC(tc.err)); got != tc.want {
			t.Errorf("toGRPC(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if toGRPC(nil) != nil {
		t.Error("toGRPC(nil) != nil")
	}
}
