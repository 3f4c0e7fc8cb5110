package shim

import (
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecRequest starts an interactive process in a running container.
type ExecRequest struct {
	ID  string   `json:"id"`
	Cmd []string `json:"cmd"`
	// Process, when set, is the full process spec; Cmd replaces its Args.
	// When nil the container's own process spec is used.
	Process *specs.Process `json:"process,omitempty"`
	// Tty gives the process a terminal; its output comes as stdout.
	Tty bool `json:"tty,omitempty"`
	// Stdin connects the process's stdin to the stream (else /dev/null).
	Stdin bool `json:"stdin,omitempty"`
	// Size is the terminal's initial size, if known.
	Size *TermSize `json:"size,omitempty"`
}

// AttachRequest connects a stream to a container's own stdio.
type AttachRequest struct {
	ID string `json:"id"`
	// Stdin forwards the stream's input to the container's stdin (it must
	// have been created with Stdin).
	Stdin bool `json:"stdin,omitempty"`
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// StreamIO are the caller's ends of an interactive exec or attach. Nil
// writers drop that output; a nil Stdin sends none.
type StreamIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan TermSize
}
