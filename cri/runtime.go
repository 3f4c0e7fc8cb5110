package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
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
	Reason     string
	Message    string
}

// ShimOptions say what a pod's shim sets up besides itself.
type ShimOptions struct {
	// SharePID starts the pod's init in a new PID namespace, as its PID 1,
	// for containers to join.
	SharePID bool
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
	Create(ctx context.Context, req CreateRequest) error
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
	Mount(ctx context.Context, id, imageID string) (string, error)
	// Unmount undoes Mount and frees the writable layer; idempotent.
	Unmount(ctx context.Context, id string) error
}

// keyedLocks serialises calls on one pod or container without a global lock.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedLocks) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// names reserves pod and container names so that two requests for the same
// metadata cannot both succeed.
type names struct {
	mu    sync.Mutex
	owner map[string]string
}

func (n *names) reserve(name, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.owner == nil {
		n.owner = map[string]string{}
	}
	if other, ok := n.owner[name]; ok && other != id {
		return errdefs.AlreadyExists("name %q is reserved by %s", name, other)
	}
	n.owner[name] = id
	return nil
}

func (n *names) release(name, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.owner[name] == id {
		delete(n.owner, name)
	}
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

func podName(m *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

func containerName(c *runtimeapi.ContainerMetadata, p *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), p.GetName(), p.GetNamespace(), p.GetUid(), c.GetAttempt())
}

// matchLabels reports whether labels carry every key/value of selector.
func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// findByID resolves a full ID or, as crictl users type them, a unique prefix.
func findByID[T any](kind, id string, get func(string) (*T, error), all func() ([]*T, error), idOf func(*T) string) (*T, error) {
	if id == "" {
		return nil, errdefs.InvalidArgument("%s ID is empty", kind)
	}
	if rec, err := get(id); err == nil {
		return rec, nil
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	recs, err := all()
	if err != nil {
		return nil, err
	}
	var found *T
	for _, r := range recs {
		if strings.HasPrefix(idOf(r), id) {
			if found != nil {
				return nil, errdefs.InvalidArgument("%s ID prefix %q is ambiguous", kind, id)
			}
			found = r
		}
	}
	if found == nil {
		return nil, errdefs.NotFound("%s %q", kind, id)
	}
	return found, nil
}
