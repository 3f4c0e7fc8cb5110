package shim

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/shim/internal/wire"
)

// File names inside a shim directory.
const (
	SocketName  = wire.SocketName
	PidFileName = "shim.pid"
	LogFileName = "shim.log"
	// ExitFileName is the exit record inside a container's state directory.
	ExitFileName = "exit.json"
)

// MaxExecOutput caps each of stdout and stderr of ExecSync, like the kubelet
// (16 MiB); output beyond it is read and dropped.
const MaxExecOutput = 16 << 20

// Status is a container's lifecycle state as the shim sees it.
type Status string

// Container states.
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusExited  Status = "exited"
)

// Exit reasons, as the kubelet expects them in ContainerStatus.Reason.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
)

// ExitReason is the reason of an exit: OOMKilled when the kernel's OOM
// killer killed a process of the container, Completed for exit code 0,
// Error otherwise. The one place this rule is written.
func ExitReason(exitCode int, oomKilled bool) string {
	switch {
	case oomKilled:
		return ReasonOOMKilled
	case exitCode == 0:
		return ReasonCompleted
	}
	return ReasonError
}

// CreateRequest describes a container to create. The rootfs must already be
// mounted by the caller; the shim passes it and the spec to the Runtime.
type CreateRequest struct {
	ID string `json:"id"`
	// Spec is the runtime spec; Spec.Process.Terminal must match Tty.
	Spec *specs.Spec `json:"spec"`
	// Rootfs is the mounted root filesystem (Spec.Root.Path is ignored).
	Rootfs string `json:"rootfs"`
	// LogPath is the CRI log file (absolute; its directory must exist).
	// Empty means the output is read and dropped.
	LogPath string `json:"logPath,omitempty"`
	// StateDir receives exit.json; empty means <shim dir>/<id>. It is
	// created if missing.
	StateDir string `json:"stateDir,omitempty"`
	// Stdin keeps a pipe open on the container's stdin (for attach); without
	// it stdin is /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// StdinOnce closes the container's stdin after the first attach ends.
	StdinOnce bool `json:"stdinOnce,omitempty"`
	// Tty gives the container a terminal; its output is logged as stdout.
	Tty bool `json:"tty,omitempty"`
}

// ContainerState is what the shim knows about one container.
type ContainerState struct {
	ID         string    `json:"id"`
	Status     Status    `json:"status"`
	Pid        int       `json:"pid,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// ExitCode is the exit status, or 128+signal when a signal killed it.
	ExitCode int `json:"exitCode"`
	// Signal is the signal that killed the process, 0 if it exited.
	Signal    int    `json:"signal,omitempty"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
	Reason    string `json:"reason,omitempty"`
	LogPath   string `json:"logPath,omitempty"`
	StateDir  string `json:"stateDir,omitempty"`
}

// ExecSyncRequest runs a command in a running container and collects its
// output.
type ExecSyncRequest struct {
	ID  string   `json:"id"`
	Cmd []string `json:"cmd"`
	// Process, when set, is the full process spec (env, cwd, user, caps);
	// Cmd then replaces its Args. When nil the container's own process
	// spec is used with Args = Cmd.
	Process *specs.Process `json:"process,omitempty"`
	// Timeout kills the command after the duration; 0 means no timeout.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// ExecSyncResult is the outcome of ExecSync; each stream is capped at
// MaxExecOutput bytes.
type ExecSyncResult struct {
	Stdout   []byte `json:"stdout,omitempty"`
	Stderr   []byte `json:"stderr,omitempty"`
	ExitCode int    `json:"exitCode"`
}

// Info identifies a running shim.
type Info struct {
	Pid   int    `json:"pid"`
	PodID string `json:"podID"`
	Dir   string `json:"dir"`
	// InitPid is the host pid of the pod init (PID 1 of the pod's shared
	// PID namespace), 0 when the pod does not share one.
	InitPid int `json:"initPid,omitempty"`
}

// RemoteError is an error returned by the shim. It unwraps to the errdefs
// sentinel (or context.DeadlineExceeded) of its kind.
type RemoteError = wire.RemoteError
