//go:build !linux || !cgo

package nsenter

// Available reports whether the pre-runtime stage is built into this
// binary: not without cgo.
const Available = false
