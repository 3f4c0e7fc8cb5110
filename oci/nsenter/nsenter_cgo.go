//go:build linux && cgo

package nsenter

// The constructor lives in nsenter.c; linking this package runs it.

import "C"

// Available reports whether the pre-runtime stage is built into this
// binary.
const Available = true
