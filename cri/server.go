// Package cri is Skiff's gRPC edge: it implements the kubelet's RuntimeService
// and ImageService by translating CRI messages into calls on the packages
// below it, and maps their error kinds to gRPC codes.
package cri

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/skiffcri/skiff/cri/events"
	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/image"
	"github.com/skiffcri/skiff/internal/statedir"
)

// RuntimeName and RuntimeVersion are reported by Version.
const (
	RuntimeName       = "skiff"
	RuntimeAPIVersion = "v1"
	kubeAPIVersion    = "0.1.0"
)

// Version is the daemon's version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// ImageService is what the CRI edge needs from the image store.
type ImageService interface {
	Pull(ctx context.Context, ref string, auth *image.Auth) (image.Image, error)
	List(ctx context.Context, filter string) ([]image.Image, error)
	Get(ctx context.Context, ref string) (image.Image, error)
	Remove(ctx context.Context, ref string) error
	FsInfo(ctx context.Context) (image.FsUsage, error)
	// Use and Release keep an image's layers while a container holds them.
	Use(ctx context.Context, imageID, holder string) error
	Release(ctx context.Context, imageID, holder string) error
}

// NetworkStatus reports whether pod networking can be set up.
type NetworkStatus interface {
	// Ready returns nil when a network config is loaded, else the reason.
	Ready() error
}

// CDI injects Container Device Interface devices into OCI specs (package
// cdi). Inject leaves spec unchanged when it fails: an unknown device is
// an errdefs.ErrFailedPrecondition naming it and the directories searched.
type CDI interface {
	Inject(spec *specs.Spec, devices []string) error
}

// Options are the services a Server is built from.
type Options struct {
	Images ImageService
	// Network is nil when no CNI manager runs: NetworkReady is false and
	// only host-network pods can run.
	Network PodNetwork
	PodOS   PodOS
	Shims   Shims
	Rootfs  Rootfs
	// ImageVolumes is nil when image volume mounts are not supported:
	// CreateContainer refuses them as unimplemented.
	ImageVolumes ImageVolumes
	Meta         Records
	// NetStats reads pods' interface counters for PodSandboxStats; nil
	// reports no network usage.
	NetStats PodNetStats
	Seccomp  spec.SeccompProfiles
	// CDI resolves the CDI devices containers ask for; nil refuses them.
	CDI      CDI
	StateDir string
	// RootfsRoot is where containers' writable layers live, for stats.
	RootfsRoot   string
	CgroupDriver string
	CgroupV2     bool
	// RuntimeHandlers are the configured handlers besides the default
	// ("" and RuntimeName), with what each supports: the built-in
	// executor's features, or an OCI runtime's.
	RuntimeHandlers []RuntimeHandler
	// Features are what the kernel and the executor support, probed by
	// the daemon at start-up: the default handler's.
	Features Features
	Log      *slog.Logger
}

// RuntimeHandler is a configured runtime handler (a RuntimeClass's
// handler name) and what its pods can have.
type RuntimeHandler struct {
	Name     string
	Features Features
}

// Features are the optional features Status reports for a runtime
// handler; RunPodSandbox refuses a pod that needs one its handler lacks.
type Features struct {
	// RecursiveReadOnlyMounts: the kernel has mount_setattr(2).
	RecursiveReadOnlyMounts bool
	// UserNamespaces: pods can have a user namespace (userns_options mode
	// POD): the kernel creates them, the layer and state filesystems can
	// be idmapped, and the shim has the stage that joins one.
	UserNamespaces bool
}

// Server implements runtimeapi.RuntimeServiceServer and ImageServiceServer.
// RPCs that are not implemented yet answer codes.Unimplemented through the
// embedded Unimplemented servers.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	images       ImageService
	network      PodNetwork
	podOS        PodOS
	shims        Shims
	rootfs       Rootfs
	volumes      ImageVolumes
	meta         Records
	seccomp      spec.SeccompProfiles
	cdi          CDI
	stateDir     string
	rootfsRoot   string
	cgroupDriver string
	cgroupV2     bool
	// handlers are the configured runtime handlers (besides the default),
	// sorted by name.
	handlers []RuntimeHandler
	features Features
	log      *slog.Logger
	kernel   kernelView
	netStats PodNetStats

	streams streaming.Server
	// podCIDRs are the node's pod CIDRs from UpdateRuntimeConfig; the
	// kubelet sends them again after a restart.
	podCIDRs atomic.Pointer[[]string]

	// life bounds background work (shim watches): the context Recover
	// was given, which lasts as long as the daemon.
	life atomic.Pointer[context.Context]
	// background counts the goroutines that run under life (exit
	// watches), for Wait.
	background sync.WaitGroup

	// containers lays out the per-container state directories.
	containers statedir.Containers
	// layers caches the usage of the writable layers (and of the tree
	// holding them), refreshed in the background.
	layers *layerUsage
	// podCPU turns the pods' CPU usage into the rate PodSandboxStats
	// reports.
	podCPU *cpuRates
	// observed is the last status seen of each container, which
	// ListContainers answers from.
	observed *observedStates
	// listed is what ListContainers takes from each container's config.
	listed *listedConfigs
	// released are the exited containers already freed but for their
	// layer and records.
	released *releasedSet

	locks keyedLocks
	// lostLocks serialise the clean-up of containers whose shim died.
	lostLocks keyedLocks
	podNames  names
	ctrNames  names

	// volumeLocks serialise, per image, what decides whether the image's
	// shared volume mount stays: holding and mounting it for a new
	// container (whose record already lists it), unmounting it once no
	// other record lists it, and RemoveImage's check for such records.
	volumeLocks keyedLocks

	// events fans container and pod transitions out to GetContainerEvents.
	events *events.Broker
}

// New builds a Server from its dependencies.
func New(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		images:       opts.Images,
		network:      opts.Network,
		podOS:        opts.PodOS,
		shims:        opts.Shims,
		rootfs:       opts.Rootfs,
		volumes:      opts.ImageVolumes,
		meta:         opts.Meta,
		seccomp:      opts.Seccomp,
		cdi:          opts.CDI,
		stateDir:     opts.StateDir,
		containers:   statedir.Under(opts.StateDir),
		rootfsRoot:   opts.RootfsRoot,
		cgroupDriver: opts.CgroupDriver,
		cgroupV2:     opts.CgroupV2,
		handlers:     sortedHandlers(opts.RuntimeHandlers),
		features:     opts.Features,
		layers:       newLayerUsage(treeUsage),
		podCPU:       newCPURates(),
		observed:     newObservedStates(),
		listed:       newListedConfigs(),
		released:     newReleasedSet(),
		log:          log,
		kernel:       &procKernel{},
		netStats:     opts.NetStats,
		events:       events.New(eventBuffer),
	}
}

func sortedHandlers(hs []RuntimeHandler) []RuntimeHandler {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b RuntimeHandler) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
