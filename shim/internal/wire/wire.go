// Package wire is what the shim's client (package shim) and its daemon
// (package shim/daemon) share privately: the request and response
// envelopes, the operation names, errors as they cross the socket, the
// request line reader, the frames of interactive streams and the socket's
// address.
//
// The bodies of requests and responses are the public types of package
// shim (CreateRequest, ContainerState, ...), carried here as raw JSON so
// that this package does not depend on them: package shim imports this one.
// The encoding on the socket is the same as if the types were embedded.
package wire

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/skiffcri/skiff/errdefs"
)

// SocketName is the shim's socket inside its directory.
const SocketName = "shim.sock"

// MaxRequest bounds one request line (a runtime spec is a few KiB; 8 MiB
// leaves room for very large env or annotation sets).
const MaxRequest = 8 << 20

// Operations.
const (
	OpPing     = "ping"
	OpCreate   = "create"
	OpStart    = "start"
	OpKill     = "kill"
	OpState    = "state"
	OpDelete   = "delete"
	OpWait     = "wait"
	OpExecSync = "execSync"
	OpReopen   = "reopenLog"
	OpList     = "list"
	OpShutdown = "shutdown"
	OpExec     = "exec"
	OpAttach   = "attach"
	OpUpdate   = "update"
)

// Request is one request line. The body fields hold the JSON of the
// operation's public request type.
type Request struct {
	Op     string `json:"op"`
	ID     string `json:"id,omitempty"`
	Signal int    `json:"signal,omitempty"`
	All    bool   `json:"all,omitempty"`
	// Create is a shim.CreateRequest.
	Create json.RawMessage `json:"create,omitempty"`
	// Exec is a shim.ExecSyncRequest.
	Exec json.RawMessage `json:"exec,omitempty"`
	// ExecStream (a shim.ExecRequest) and Attach (a shim.AttachRequest)
	// start a framed stream (see frame.go).
	ExecStream json.RawMessage `json:"execStream,omitempty"`
	Attach     json.RawMessage `json:"attach,omitempty"`
	// Update is the runtime-spec LinuxResources to apply to container ID.
	Update json.RawMessage `json:"update,omitempty"`
}

// Response is the answer to a request that is not a stream.
type Response struct {
	Error *Error `json:"error,omitempty"`
	// Info is a shim.Info.
	Info json.RawMessage `json:"info,omitempty"`
	// State is a shim.ContainerState, States a list of them.
	State  json.RawMessage `json:"state,omitempty"`
	States json.RawMessage `json:"states,omitempty"`
	// Exec is a shim.ExecSyncResult.
	Exec json.RawMessage `json:"exec,omitempty"`
}

// Encode returns the JSON of a body.
func Encode(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// Decode decodes the body b of an op request into v. A missing body (or a
// null one) is an invalid argument, as is a body that does not decode.
func Decode(b json.RawMessage, v any, op string) error {
	if len(b) == 0 || string(b) == "null" {
		return errdefs.InvalidArgument("%s request without body", op)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errdefs.InvalidArgument("decode shim request: %v", err)
	}
	return nil
}

// Error is an error as it crosses the wire.
type Error struct {
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message"`
}

// kinds are the error kinds that cross the wire: every errdefs sentinel
// (TestErrorKinds round-trips each) and deadlines.
var kinds = []struct {
	name string
	err  error
}{
	{"not_found", errdefs.ErrNotFound},
	{"already_exists", errdefs.ErrAlreadyExists},
	{"invalid_argument", errdefs.ErrInvalidArgument},
	{"failed_precondition", errdefs.ErrFailedPrecondition},
	{"unavailable", errdefs.ErrUnavailable},
	{"unimplemented", errdefs.ErrUnimplemented},
	{"resource_exhausted", errdefs.ErrResourceExhausted},
	{"deadline_exceeded", context.DeadlineExceeded},
}

// ToWire converts err for the wire, keeping its kind; nil stays nil.
func ToWire(err error) *Error {
	if err == nil {
		return nil
	}
	we := &Error{Message: err.Error()}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			we.Kind = k.name
			break
		}
	}
	return we
}

// RemoteError is an error returned by the shim. It unwraps to the errdefs
// sentinel (or context.DeadlineExceeded) of its kind.
type RemoteError struct {
	Message string
	kind    error
}

func (e *RemoteError) Error() string { return "shim: " + e.Message }
func (e *RemoteError) Unwrap() error { return e.kind }

// FromWire turns a wire error back into a *RemoteError; nil stays nil.
func FromWire(we *Error) error {
	if we == nil {
		return nil
	}
	re := &RemoteError{Message: we.Message}
	for _, k := range kinds {
		if k.name == we.Kind {
			re.kind = k.err
		}
	}
	return re
}

// ReadLine reads one newline-terminated line of at most max bytes.
func ReadLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errdefs.InvalidArgument("shim request longer than %d bytes", max)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}
