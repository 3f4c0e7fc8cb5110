// Package errdefs holds the error kinds that Skiff's packages return so that
// only the gRPC edge (package cri) decides which status code a failure
// becomes. It imports nothing beyond the standard library, so the lean shim
// can use it.
package errdefs

import (
	"errors"
	"fmt"
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
