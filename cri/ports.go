package cri

import (
	"context"
	"encoding/json"
	"io"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/meta"
)

// PodNetworkRequest describes one pod's attachment for the network plugin.
type PodNetworkRequest struct {
	PodID, NetNS         string
	Name, Namespace, UID string
	PortMappings         []*runtimeapi.PortMapping
	DNS                  *runtimeapi.DNSConfig
	Annotations, Labels  map[string]string
	CgroupParent         string
	// PodCIDRs are the node's pod ranges, for IPAM plugins that use them.
	PodCIDRs []string
}

// PodNetwork attaches pods to the network (the CNI manager).
type PodNetwork interface {
	NetworkStatus
	// Setup attaches the pod and returns its IPs, primary first. On error
	// nothing of the attachment is left behind.
	Setup(ctx context.Context, req PodNetworkRequest) ([]string, error)
	// Teardown detaches the pod; it succeeds when nothing is attached.
	Teardown(ctx context.Context, req PodNetworkRequest) error
	// GC detaches every pod not listed, after a restart.
	GC(ctx context.Context, podIDs []string) error
	// Result is the plugins' result of the pod's attachment, as JSON;
	// ErrNotFound when the pod has none.
	Result(ctx context.Context, podID string) (json.RawMessage, error)
}

// PodOS creates and removes the kernel resources of a pod: pinned
// namespaces, the pod's files and its /dev/shm (the sandbox package).
type PodOS interface {
	// Create makes the pod's namespaces, files and shm under dir.
	Create(ctx context.Context, dir string, cfg *runtimeapi.PodSandboxConfig) (spec.Namespaces, spec.PodFiles, error)
	// PinPID pins the PID namespace of the pod's init (pid) under dir.
	PinPID(dir string, pid int) (string, error)
	// SetHosts rewrites the pod's hosts file with its IPs once known.
	SetHosts(dir string, hostNetwork bool, ips []string, hostname string) error
	// Remove undoes Create and PinPID; it is idempotent. Network teardown
	// must come first: plugins need the namespace to clean up.
	Remove(ctx context.Context, dir string) error
}

// ContainerState is a container's live state as its shim knows it.
type ContainerState struct {
	Status     string // created, running, exited, unknown
	Pid        int
	ExitCode   int32
	StartedAt  time.Time
	FinishedAt time.Time
	OOMKilled  bool
	Reason     string // for an exited container always set: the exit record's, e.g. Completed
	Message    string
}

// ShimOptions say what a pod's shim sets up besides itself.
type ShimOptions struct {
	// RuntimeHandler is the pod's runtime handler: the shim runs its
	// containers on the built-in executor or on the handler's OCI runtime.
	RuntimeHandler string
	// SharePID starts the pod's init in a new PID namespace, as its PID 1,
	// for containers to join.
	SharePID bool
	// UserNS is the pod's user namespace, which the pod init joins (with
	// SharePID); "" for the host's.
	UserNS string
	// InitCgroup is the cgroup of the pod init (with SharePID): where a
	// pause container would be, under the pod's cgroup parent.
	InitCgroup string
}

// ReasonShimLost is the reason of a container that Skiff killed because its
// pod's shim died: nothing was left to watch it, keep its logs or record
// its exit.
const ReasonShimLost = "ShimLost"

// Container states reported by shims.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	StateUnknown = "unknown"
)

// CreateRequest asks a shim to create a container stopped at its start barrier.
type CreateRequest struct {
	ID        string
	Spec      *specs.Spec
	LogPath   string
	Stdin     bool
	StdinOnce bool
	Tty       bool
}

// Shim is the per-pod process that runs a pod's containers.
type Shim interface {
	// Create creates the container and returns its state (created,
	// with its init's pid).
	Create(ctx context.Context, req CreateRequest) (ContainerState, error)
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id string, sig int, all bool) error
	State(ctx context.Context, id string) (ContainerState, error)
	// Wait returns when the container has exited or ctx ends.
	Wait(ctx context.Context, id string) (ContainerState, error)
	Delete(ctx context.Context, id string) error
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error)
	ReopenLog(ctx context.Context, id string) error
	// UpdateResources has the executor set new limits on the container's
	// cgroup; fields res leaves nil keep their value.
	UpdateResources(ctx context.Context, id string, res *specs.LinuxResources) error
	// List names the containers the shim runs.
	List(ctx context.Context) ([]string, error)
	// InitPID is the host PID of the pod's init, 0 without a shared PID namespace.
	InitPID() int
	// Pid is the host PID of the shim itself.
	Pid() int
	// Exec runs cmd in the container with the given stdio until it exits.
	Exec(ctx context.Context, id string, cmd []string, stdio Stdio) (exitCode int32, err error)
	// Attach connects to the container's own stdio until it exits or ctx ends.
	Attach(ctx context.Context, id string, stdio Stdio) error
	Close() error
}

// TermSize is a terminal's size in characters.
type TermSize struct{ Width, Height uint16 }

// Stdio are the streams of an interactive exec or attach; nil streams are
// not connected.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.WriteCloser
	Tty            bool
	Resize         <-chan TermSize
}

// Shims starts and finds the shim of each pod.
type Shims interface {
	// Start launches the pod's shim.
	Start(ctx context.Context, podID string, opts ShimOptions) (Shim, error)
	// Connect finds the running shim of a pod, after a daemon restart too.
	Connect(ctx context.Context, podID string) (Shim, error)
	// States asks the pod's shim, in one call, for the state of every
	// container it runs, by ID; ErrUnavailable when no shim answers.
	States(ctx context.Context, podID string) (map[string]ContainerState, error)
	// Stop ends a pod's shim and removes its files; idempotent. When the
	// shim died, it ends what the shim left: the pod init, by its cgroup
	// initCgroup (empty when the pod has no init).
	Stop(ctx context.Context, podID, initCgroup string) error
	// Running reports whether the pod's shim process is alive, whether or
	// not it answers.
	Running(podID string) bool
	// Died reports whether the pod's shim ended without shutting down (it
	// was killed or crashed), as opposed to running or shut down.
	Died(podID string) bool
	// WaitExit returns once the pod's shim process, whose pid its Shim
	// reported, has exited; or ctx's error when ctx ends first.
	WaitExit(ctx context.Context, podID string, pid int) error
	// Lost ends every process of container id after its pod's shim died,
	// records the container's exit (the shim cannot) and returns that
	// state. It fails with ErrUnavailable when the shim still runs.
	Lost(ctx context.Context, podID, id string) (ContainerState, error)
	// ExitState reads a container's recorded exit when its shim is gone.
	ExitState(podID, id string) (ContainerState, bool)
	// Cleanup frees what the executor still holds for a container (cgroup,
	// state) when its shim is gone; idempotent.
	Cleanup(ctx context.Context, id string) error
}

// Rootfs mounts the writable root filesystem of containers.
type Rootfs interface {
	// Mount prepares and mounts id's rootfs from the image's layers.
	Mount(ctx context.Context, id, imageID string, opts RootfsOptions) (string, error)
	// Unmount undoes Mount and frees the writable layer; idempotent.
	Unmount(ctx context.Context, id string) error
	// Detach unmounts id's rootfs and keeps the writable layer for
	// Unmount; idempotent.
	Detach(ctx context.Context, id string) error
}

// RootfsOptions are the per-container choices of a rootfs mount.
type RootfsOptions struct {
	// UserNS, when set, is the path of the pod's user namespace file: the
	// rootfs is presented through idmapped mounts with its mappings.
	UserNS string
}

// ImageVolumes mounts images read-only for containers' image volume mounts
// (CRI Mount.image), one mount per image shared by every container that
// mounts it, and one per image and pod with a user namespace, idmapped
// with it, shared by the pod's containers (package image/volume). Which
// containers still use a mount is the caller's to track.
type ImageVolumes interface {
	// Mount mounts the image's layers read-only and returns the mount
	// point. It is idempotent, and mounts again an image whose mount is
	// gone (after a reboot) though its mount point or records remain.
	Mount(ctx context.Context, imageID string, opts ImageVolumeOptions) (string, error)
	// Unmount unmounts the image's mount of pod (its plain mount when pod
	// is "") and removes the mount point; idempotent.
	Unmount(ctx context.Context, imageID, pod string) error
}

// ImageVolumeOptions choose which of an image's mounts ImageVolumes.Mount
// makes: the image's plain one when empty.
type ImageVolumeOptions struct {
	// Pod and UserNS, set together, ask for pod Pod's own mount of the
	// image, its layers idmapped with the pod's user namespace at UserNS:
	// the image's root-owned files belong to the pod's root. Containers
	// bind it without idmapping it again.
	Pod, UserNS string
}

// Records is the store of pod and container records (package meta's
// Store). Lookups of what is not there wrap errdefs.ErrNotFound.
type Records interface {
	PutPod(p *meta.Pod) error
	Pod(id string) (*meta.Pod, error)
	Pods() ([]*meta.Pod, error)
	DeletePod(id string) error
	PutContainer(c *meta.Container) error
	Container(id string) (*meta.Container, error)
	Containers() ([]*meta.Container, error)
	DeleteContainer(id string) error
}
