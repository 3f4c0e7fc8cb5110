// Package errdefs holds the error kinds that Skiff's packages return so that
// only the gRPC edge decides which status code a failure becomes.
package errdefs

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinels wrapped with %w by every package below the CRI layer.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrUnimplemented      = errors.New("not implemented")
	ErrResourceExhausted  = errors.New("resource exhausted")
)

// NotFound formats an error that wraps ErrNotFound.
func NotFound(format string, args ...any) error { return wrap(ErrNotFound, format, args...) }

// AlreadyExists formats an error that wraps ErrAlreadyExists.
func AlreadyExists(format string, args ...any) error { return wrap(ErrAlreadyExists, format, args...) }

// InvalidArgument formats an error that wraps ErrInvalidArgument.
func InvalidArgument(format string, args ...any) error {
	return wrap(ErrInvalidArgument, format, args...)
}

// FailedPrecondition formats an error that wraps ErrFailedPrecondition.
func FailedPrecondition(format string, args ...any) error {
	return wrap(ErrFailedPrecondition, format, args...)
}

// Unavailable formats an error that wraps ErrUnavailable.
func Unavailable(format string, args ...any) error { return wrap(ErrUnavailable, format, args...) }

// Unimplemented formats an error that wraps ErrUnimplemented.
func Unimplemented(format string, args ...any) error { return wrap(ErrUnimplemented, format, args...) }

// ResourceExhausted formats an error that wraps ErrResourceExhausted.
func ResourceExhausted(format string, args ...any) error {
	return wrap(ErrResourceExhausted, format, args...)
}

func wrap(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %w", fmt.Errorf(format, args...), kind)
}

// IsNotFound reports whether err is of the not-found kind.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// ToGRPC maps an error built on the sentinels to a gRPC status error; errors
// that already carry a status keep it.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// Code returns the gRPC code for err's kind.
func Code(err error) codes.Code {
	switch {
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, ErrUnimplemented):
		return codes.Unimplemented
	case errors.Is(err, ErrResourceExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}
