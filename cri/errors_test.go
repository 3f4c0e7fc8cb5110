package cri

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

// TestCheckpointUnimplemented: the checkpoint family answers Unimplemented
// with what is missing, not the generated "method not implemented".
func TestCheckpointUnimplemented(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"CheckpointContainer": func() error {
			_, err := e.s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "c"})
			return err
		},
		"CheckpointPod": func() error {
			_, err := e.s.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: "p"})
			return err
		},
		"RestorePod": func() error { _, err := e.s.RestorePod(ctx, &runtimeapi.RestorePodRequest{}); return err },
	} {
		err := call()
		if !errors.Is(err, errdefs.ErrUnimplemented) || !strings.Contains(err.Error(), "CRIU") {
			t.Errorf("%s = %v, want Unimplemented naming CRIU", name, err)
		}
	}
}
