package cri

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.etcd.io/bbolt"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/image"
	"github.com/skiffcri/skiff/meta"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// The fakes below stand in for the packages the CRI layer drives, so that
// RPCs run end to end without root: a real meta store in a temp dir, shims
// that keep container states in memory, a rootfs that is a plain directory.

// fakeImages answers img for every reference, except the references and
// IDs of others (images mounted as volumes) and references starting with
// "unknown/", which are not found. It records holds and removals.
type fakeImages struct {
	img    image.Image
	fs     image.FsUsage
	others map[string]image.Image

	mu      sync.Mutex
	holds   map[string]bool // "<holder> <image ID>"
	removed []string
}

func (f *fakeImages) Pull(context.Context, string, *image.Auth) (image.Image, error) {
	return f.img, nil
}
func (f *fakeImages) List(context.Context, string) ([]image.Image, error) {
	return []image.Image{f.img}, nil
}
func (f *fakeImages) Get(_ context.Context, ref string) (image.Image, error) {
	if img, ok := f.others[ref]; ok {
		return img, nil
	}
	if strings.HasPrefix(ref, "unknown/") {
		return image.Image{}, errdefs.NotFound("image %q", ref)
	}
	return f.img, nil
}
func (f *fakeImages) Remove(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, ref)
	return nil
}
func (f *fakeImages) FsInfo(context.Context) (image.FsUsage, error) { return f.fs, nil }
func (f *fakeImages) Use(_ context.Context, imageID, holder string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds == nil {
		f.holds = map[string]bool{}
	}
	f.holds[holder+" "+imageID] = true
	return nil
}
func (f *fakeImages) Release(_ context.Context, imageID, holder string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.holds, holder+" "+imageID)
	return nil
}

// held lists the holds, sorted.
func (f *fakeImages) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.holds))
}

// fakeVolumes "mounts" an image as a directory holding a fixed tree, with
// what sub path tests need: directories, a file, a symlink inside the
// image and one out of it; a pod's mount of it is a directory of its own,
// which remembers the user namespace it was made with. Unmount removes the
// directory.
type fakeVolumes struct {
	dir string

	mu               sync.Mutex
	mounts, unmounts int               // calls that made or removed a mount
	userNS           map[string]string // the user namespace of each pod's mount, by path
}

// path is the image's plain mount for pod "", else pod's.
func (f *fakeVolumes) path(imageID, pod string) string {
	p := filepath.Join(f.dir, strings.TrimPrefix(imageID, "sha256:"))
	if pod != "" {
		p += "@" + pod
	}
	return p
}

func (f *fakeVolumes) Mount(_ context.Context, imageID string, opts ImageVolumeOptions) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if (opts.Pod == "") != (opts.UserNS == "") {
		return "", errdefs.InvalidArgument("image volume %s: pod %q, user namespace %q", imageID, opts.Pod, opts.UserNS)
	}
	p := f.path(imageID, opts.Pod)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Join(p, "data", "sub"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(p, "data", "sub", "file"), []byte("x"), 0o644); err != nil {
		return "", err
	}
	for link, target := range map[string]string{"inside": "data/sub", "outside": "../../..", "absolute": "/etc"} {
		if err := os.Symlink(target, filepath.Join(p, link)); err != nil {
			return "", err
		}
	}
	if opts.UserNS != "" {
		if f.userNS == nil {
			f.userNS = map[string]string{}
		}
		f.userNS[p] = opts.UserNS
	}
	f.mounts++
	return p, nil
}

func (f *fakeVolumes) Unmount(_ context.Context, imageID, pod string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.path(imageID, pod)
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	f.unmounts++
	delete(f.userNS, p)
	return os.RemoveAll(p)
}

// mounted reports whether the image's plain mount is there.
func (f *fakeVolumes) mounted(imageID string) bool { return f.mountedFor(imageID, "") }

// mountedFor reports whether the image's mount of pod (plain for "") is
// there.
func (f *fakeVolumes) mountedFor(imageID, pod string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := os.Stat(f.path(imageID, pod))
	return err == nil
}

// madeWith is the user namespace the image's mount of pod was made with.
func (f *fakeVolumes) madeWith(imageID, pod string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.userNS[f.path(imageID, pod)]
}

// all lists the mounts there, by directory name.
func (f *fakeVolumes) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ents, _ := os.ReadDir(f.dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func (f *fakeVolumes) counts() (mounts, unmounts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mounts, f.unmounts
}

type fakePodOS struct{}

func (fakePodOS) Create(_ context.Context, dir string, cfg *runtimeapi.PodSandboxConfig) (spec.Namespaces, spec.PodFiles, error) {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	var out spec.Namespaces
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		out.Net, out.UTS = filepath.Join(dir, "ns/net"), filepath.Join(dir, "ns/uts")
	}
	if ns.GetIpc() != runtimeapi.NamespaceMode_NODE {
		out.IPC = filepath.Join(dir, "ns/ipc")
	}
	// As skiffd's: no options, or mode NODE, is the node's user namespace.
	if u := ns.GetUsernsOptions(); u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD {
		out.User = filepath.Join(dir, "ns/user")
	}
	return out, spec.PodFiles{Hostname: filepath.Join(dir, "hostname"), Hosts: filepath.Join(dir, "hosts"),
		ResolvConf: filepath.Join(dir, "resolv.conf"), Shm: filepath.Join(dir, "shm")}, nil
}
func (fakePodOS) PinPID(dir string, pid int) (string, error) {
	return filepath.Join(dir, "ns/pid"), nil
}
func (fakePodOS) SetHosts(string, bool, []string, string) error       { return nil }
func (fakePodOS) Remove(context.Context, string) error                { return nil }
func (fakeNetwork) GC(context.Context, []string) error                { return nil }
func (fakeNetwork) Teardown(context.Context, PodNetworkRequest) error { return nil }
func (fakeNetwork) Ready() error                                      { return nil }

type fakeNetwork struct{}

func (fakeNetwork) Setup(context.Context, PodNetworkRequest) ([]string, error) {
	return []string{"10.88.0.7", "fd00::7"}, nil
}
func (fakeNetwork) Result(_ context.Context, podID string) (json.RawMessage, error) {
	return json.RawMessage(`{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.7/24"}]}`), nil
}

type fakeRootfs struct{ dir string }

func (f fakeRootfs) Mount(_ context.Context, id, _ string, _ RootfsOptions) (string, error) {
	p := filepath.Join(f.dir, id)
	if err := os.MkdirAll(filepath.Join(p, "etc"), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(filepath.Join(p, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
}
func (f fakeRootfs) Unmount(_ context.Context, id string) error {
	return os.RemoveAll(filepath.Join(f.dir, id))
}

// Detach marks the rootfs detached: a file beside it, which Unmount
// removes with it.
func (f fakeRootfs) Detach(_ context.Context, id string) error {
	if _, err := os.Stat(filepath.Join(f.dir, id)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return os.WriteFile(filepath.Join(f.dir, id, "detached"), nil, 0o644)
}

// fakeShims runs every pod's containers in one table.
type fakeShims struct {
	mu     sync.Mutex
	pods   map[string]int // pod -> init pid (0: none)
	exited map[string]chan struct{}
	states map[string]ContainerState
	// exitRecords are the exits of containers deleted from their shim,
	// which the exit record on disk keeps answering for.
	exitRecords map[string]ContainerState
	specs       map[string]CreateRequest
	// updates holds the resources of each UpdateResources call, by
	// container; updateErr, when set, fails them.
	updates   map[string][]*specs.LinuxResources
	updateErr error
	nextPid   int
	// ended has, per container, a channel closed when it exits or is
	// deleted: what a waiting Wait returns on, as the shim's does.
	ended map[string]chan struct{}
	// failWaits fails that many Wait calls with ErrUnavailable, as a
	// dial that failed under load would.
	failWaits int
	// podOf is each container's pod; statesCalls counts States calls by
	// pod.
	podOf       map[string]string
	statesCalls map[string]int
	// stateCalls counts State calls by container.
	stateCalls map[string]int
	// handler is the runtime handler of the last shim started.
	handler string
}

func (f *fakeShims) lastHandler() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handler
}

func newFakeShims() *fakeShims {
	return &fakeShims{pods: map[string]int{}, exited: map[string]chan struct{}{}, states: map[string]ContainerState{}, exitRecords: map[string]ContainerState{}, specs: map[string]CreateRequest{}, updates: map[string][]*specs.LinuxResources{}, nextPid: 4000, ended: map[string]chan struct{}{}, podOf: map[string]string{}, statesCalls: map[string]int{}, stateCalls: map[string]int{}}
}

func (f *fakeShims) Start(_ context.Context, podID string, opts ShimOptions) (Shim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[podID] = 0
	f.handler = opts.RuntimeHandler
	f.exited[podID] = make(chan struct{})
	if opts.SharePID {
		f.nextPid++
		f.pods[podID] = f.nextPid
	}
	return &fakeShim{f: f, pod: podID}, nil
}
func (f *fakeShims) Connect(_ context.Context, podID string) (Shim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pods[podID]; !ok {
		return nil, errdefs.NotFound("shim of pod %s", podID)
	}
	return &fakeShim{f: f, pod: podID}, nil
}
func (f *fakeShims) States(_ context.Context, podID string) (map[string]ContainerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statesCalls[podID]++
	if _, ok := f.pods[podID]; !ok {
		return nil, errdefs.Unavailable("shim of pod %s", podID)
	}
	out := map[string]ContainerState{}
	for id, st := range f.states {
		if f.podOf[id] == podID {
			out[id] = st
		}
	}
	return out, nil
}
func (f *fakeShims) Stop(_ context.Context, podID, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pods[podID]; ok {
		close(f.exited[podID])
	}
	delete(f.pods, podID)
	return nil
}
func (f *fakeShims) Running(podID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pods[podID]
	return ok
}
func (f *fakeShims) Died(string) bool { return false }
func (f *fakeShims) WaitExit(ctx context.Context, podID string, _ int) error {
	f.mu.Lock()
	ch := f.exited[podID]
	f.mu.Unlock()
	if ch == nil {
		return errdefs.NotFound("shim of pod %s", podID)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (f *fakeShims) Lost(_ context.Context, podID, _ string) (ContainerState, error) {
	return ContainerState{}, errdefs.Unavailable("shim of pod %s runs", podID)
}
func (f *fakeShims) ExitState(_, id string) (ContainerState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.states[id]; ok {
		return st, st.Status == StateExited
	}
	st, ok := f.exitRecords[id]
	return st, ok
}
func (f *fakeShims) Cleanup(context.Context, string) error { return nil }

// set changes a container's state as its process would; a change to
// exited wakes its waits.
func (f *fakeShims) set(id string, fn func(*ContainerState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.states[id]
	fn(&st)
	f.states[id] = st
	if st.Status == StateExited {
		f.endLocked(id)
	}
}

func (f *fakeShims) endLocked(id string) {
	if ch, ok := f.ended[id]; ok {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

// exit ends a running container by itself, as its process exiting would:
// the shim pushes the exit to whoever waits.
func (f *fakeShims) exit(id string, code int32) {
	f.set(id, func(st *ContainerState) { st.Status, st.FinishedAt, st.ExitCode = StateExited, time.Now(), code })
}

type fakeShim struct {
	f   *fakeShims
	pod string
}

func (s *fakeShim) Create(_ context.Context, req CreateRequest) (ContainerState, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.nextPid++
	st := ContainerState{Status: StateCreated, Pid: s.f.nextPid}
	s.f.states[req.ID] = st
	s.f.specs[req.ID] = req
	s.f.ended[req.ID] = make(chan struct{})
	s.f.podOf[req.ID] = s.pod
	return st, nil
}
func (s *fakeShim) Start(_ context.Context, id string) error {
	s.f.set(id, func(st *ContainerState) { st.Status, st.StartedAt = StateRunning, time.Now() })
	return nil
}
func (s *fakeShim) Kill(_ context.Context, id string, _ int, _ bool) error {
	s.f.set(id, func(st *ContainerState) { st.Status, st.FinishedAt, st.ExitCode = StateExited, time.Now(), 137 })
	return nil
}
func (s *fakeShim) State(_ context.Context, id string) (ContainerState, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.stateCalls[id]++
	st, ok := s.f.states[id]
	if !ok {
		return ContainerState{}, errdefs.NotFound("container %s", id)
	}
	return st, nil
}
func (s *fakeShim) Wait(ctx context.Context, id string) (ContainerState, error) {
	s.f.mu.Lock()
	ch := s.f.ended[id]
	if s.f.failWaits > 0 {
		s.f.failWaits--
		s.f.mu.Unlock()
		return ContainerState{}, errdefs.Unavailable("shim of pod %s: dial: resource temporarily unavailable", s.pod)
	}
	s.f.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ContainerState{}, ctx.Err()
		}
	}
	return s.State(ctx, id)
}
func (s *fakeShim) Delete(_ context.Context, id string) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if st, ok := s.f.states[id]; ok && st.Status == StateExited {
		s.f.exitRecords[id] = st
	}
	delete(s.f.states, id)
	s.f.endLocked(id)
	delete(s.f.ended, id)
	return nil
}
func (s *fakeShim) ExecSync(context.Context, string, []string, time.Duration) ([]byte, []byte, int32, error) {
	return nil, nil, 0, errdefs.Unimplemented("fake exec")
}
func (s *fakeShim) ReopenLog(context.Context, string) error { return nil }
func (s *fakeShim) UpdateResources(_ context.Context, id string, res *specs.LinuxResources) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if _, ok := s.f.states[id]; !ok {
		return errdefs.NotFound("container %s", id)
	}
	if s.f.updateErr != nil {
		return s.f.updateErr
	}
	s.f.updates[id] = append(s.f.updates[id], res)
	return nil
}
func (s *fakeShim) List(context.Context) ([]string, error) { return nil, nil }
func (s *fakeShim) Exec(context.Context, string, []string, Stdio) (int32, error) {
	return 0, errdefs.Unimplemented("fake exec")
}
func (s *fakeShim) Attach(context.Context, string, Stdio) error {
	return errdefs.Unimplemented("fake attach")
}
func (s *fakeShim) Close() error { return nil }
func (s *fakeShim) Pid() int     { return 3000 }
func (s *fakeShim) InitPID() int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.pods[s.pod]
}

// fakeKernel clamps oom_score_adj as a kernel refusing lower values does
// and enforces hugepage limits only where told.
type fakeKernel struct {
	minOOM  int
	hugetlb bool
	// cgroups are the stats of cgroups by path.
	cgroups map[string]*cgroups.Stats
	// cgroupErrs fail the reads of cgroups by path.
	cgroupErrs map[string]error
	// procs are the process stats of cgroups by path.
	procs map[string]*ProcessStats
}

func (k fakeKernel) OOMScoreAdj(int) (int, error) { return k.minOOM, nil }
func (k fakeKernel) HugetlbLimited(string, string) (bool, error) {
	return k.hugetlb, nil
}

// CgroupStats answers the error or the stats set for a cgroup path, and
// NotFound (a cgroup that is gone) for any other.
func (k fakeKernel) CgroupStats(path string) (*cgroups.Stats, error) {
	if err := k.cgroupErrs[path]; err != nil {
		return nil, err
	}
	if st, ok := k.cgroups[path]; ok {
		return st, nil
	}
	return nil, errdefs.NotFound("cgroup %s", path)
}

// ProcessStats answers the stats set for a cgroup path, and NotFound for
// any other.
func (k fakeKernel) ProcessStats(path string) (*ProcessStats, error) {
	if st, ok := k.procs[path]; ok {
		return st, nil
	}
	return nil, errdefs.NotFound("cgroup %s", path)
}

type fakeNetStats struct {
	ifaces []InterfaceStats
	err    error
	asked  []string
}

func (f *fakeNetStats) InterfaceStats(_ context.Context, netns string) ([]InterfaceStats, error) {
	f.asked = append(f.asked, netns)
	return f.ifaces, f.err
}

// testEnv is a Server on fakes.
type testEnv struct {
	s        *Server
	shims    *fakeShims
	netStats *fakeNetStats
	images   *fakeImages
	volumes  *fakeVolumes
	root     string
}

// The image the test env's fakes serve for image volumes, besides the
// containers' image.
const (
	volumeImageRef = "docker.io/skiff/data:1"
	volumeImageID  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := bbolt.Open(filepath.Join(dir, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := meta.New(db)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		shims:    newFakeShims(),
		netStats: &fakeNetStats{},
		images: &fakeImages{img: image.Image{
			ID: "sha256:1111", RepoTags: []string{"docker.io/library/busybox:1.36"},
			Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}, StopSignal: "SIGQUIT"}},
		}},
		volumes: &fakeVolumes{dir: filepath.Join(dir, "image-volumes")},
		root:    filepath.Join(dir, "root"),
	}
	vol := image.Image{ID: volumeImageID, RepoTags: []string{volumeImageRef}}
	e.images.others = map[string]image.Image{volumeImageRef: vol, volumeImageID: vol}
	e.s = New(Options{
		Images: e.images, Network: fakeNetwork{}, PodOS: fakePodOS{}, Shims: e.shims,
		Rootfs: fakeRootfs{dir: filepath.Join(dir, "rootfs")}, ImageVolumes: e.volumes, Meta: store, NetStats: e.netStats,
		StateDir: filepath.Join(dir, "state"), RootfsRoot: filepath.Join(e.root, "containers"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	e.s.kernel = fakeKernel{minOOM: 0, hugetlb: true}
	// A node whose default handler does everything.
	e.s.features = Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	// Background work (exit watches) ends with the test, before the
	// store closes.
	life, cancel := context.WithCancel(context.Background())
	e.s.life.Store(&life)
	t.Cleanup(func() {
		cancel()
		e.s.Wait()
	})
	return e
}

func podConfigFor(name string, pid runtimeapi.NamespaceMode, network runtimeapi.NamespaceMode) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name + "-uid"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/" + name,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Pid: pid, Network: network,
			}},
		},
	}
}

func (e *testEnv) runPod(t testing.TB, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	return resp.PodSandboxId
}

func (e *testEnv) createContainer(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	// As the kubelet does: the pod's namespace modes.
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	cfg.Linux.SecurityContext.NamespaceOptions = podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	resp, err := e.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	return resp.ContainerId
}

func ctrConfig(name string, res *runtimeapi.LinuxContainerResources) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Args:     []string{"sleep", "1000"},
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: res},
	}
}
