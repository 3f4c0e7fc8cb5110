package cri

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffcri/skiff/errdefs"
)

// toGRPC maps an error built on the sentinels to a gRPC status error; errors
// that already carry a status keep it.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(grpcCode(err), err.Error())
}

// grpcCode returns the gRPC code for err's kind.
func grpcCode(err error) codes.Code {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, errdefs.ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, errdefs.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, errdefs.ErrUnimplemented):
		return codes.Unimplemented
	case errors.Is(err, errdefs.ErrResourceExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}
