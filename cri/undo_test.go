package cri

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/image"
	"github.com/skiffcri/skiff/meta"
)

// ledger counts what the fakes below hold for the server (namespaces,
// network attachments, shims, shim containers, rootfs mounts, image holds)
// and fails the step it is told to, so that a test can make each step of an
// RPC fail in turn and check that the undo released everything before it.
type ledger struct {
	mu   sync.Mutex
	live map[string]bool
	fail string
	seen map[string]bool // steps reached
}

var errInjected = errors.New("injected failure")

func newLedger() *ledger { return &ledger{live: map[string]bool{}, seen: map[string]bool{}} }

// step reports a failure when step is the one to fail.
func (l *ledger) step(step string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[step] = true
	if l.fail == step {
		return fmt.Errorf("%s: %w", step, errInjected)
	}
	return nil
}

func (l *ledger) acquire(step, key string) error {
	if err := l.step(step); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live[step+" "+key] = true
	return nil
}

func (l *ledger) release(step, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.live, step+" "+key)
}

func (l *ledger) held() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k := range l.live {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type ledgerPodOS struct {
	fakePodOS
	l *ledger
}

func (p ledgerPodOS) Create(ctx context.Context, dir string, cfg *runtimeapi.PodSandboxConfig) (spec.Namespaces, spec.PodFiles, error) {
	if err := p.l.acquire("pod namespaces", dir); err != nil {
		return spec.Namespaces{}, spec.PodFiles{}, err
	}
	return p.fakePodOS.Create(ctx, dir, cfg)
}
func (p ledgerPodOS) PinPID(dir string, pid int) (string, error) {
	if err := p.l.step("pin pid namespace"); err != nil {
		return "", err
	}
	return p.fakePodOS.PinPID(dir, pid)
}
func (p ledgerPodOS) SetHosts(dir string, hostNet bool, ips []string, hostname string) error {
	return p.l.step("hosts file")
}
func (p ledgerPodOS) Remove(_ context.Context, dir string) error {
	p.l.release("pod namespaces", dir)
	return nil
}

type ledgerNetwork struct {
	fakeNetwork
	l *ledger
}

func (n ledgerNetwork) Setup(ctx context.Context, req PodNetworkRequest) ([]string, error) {
	if err := n.l.acquire("network", req.PodID); err != nil {
		return nil, err
	}
	return n.fakeNetwork.Setup(ctx, req)
}
func (n ledgerNetwork) Teardown(_ context.Context, req PodNetworkRequest) error {
	n.l.release("network", req.PodID)
	return nil
}

type ledgerShims struct {
	*fakeShims
	l *ledger
}

func (s ledgerShims) Start(ctx context.Context, podID string, opts ShimOptions) (Shim, error) {
	if err := s.l.acquire("shim", podID); err != nil {
		return nil, err
	}
	sh, err := s.fakeShims.Start(ctx, podID, opts)
	return ledgerShim{Shim: sh, l: s.l}, err
}
func (s ledgerShims) Connect(ctx context.Context, podID string) (Shim, error) {
	if err := s.l.step("shim connect"); err != nil {
		return nil, err
	}
	sh, err := s.fakeShims.Connect(ctx, podID)
	if err != nil {
		return nil, err
	}
	return ledgerShim{Shim: sh, l: s.l}, nil
}
func (s ledgerShims) Stop(ctx context.Context, podID, initCgroup string) error {
	s.l.release("shim", podID)
	return s.fakeShims.Stop(ctx, podID, initCgroup)
}

type ledgerShim struct {
	Shim
	l *ledger
}

func (s ledgerShim) Create(ctx context.Context, req CreateRequest) (ContainerState, error) {
	if err := s.l.acquire("shim container", req.ID); err != nil {
		return ContainerState{}, err
	}
	return s.Shim.Create(ctx, req)
}
func (s ledgerShim) Delete(ctx context.Context, id string) error {
	s.l.release("shim container", id)
	return s.Shim.Delete(ctx, id)
}

type ledgerImages struct {
	*fakeImages
	l *ledger
}

func (i ledgerImages) Get(ctx context.Context, ref string) (image.Image, error) {
	step := "image lookup"
	if _, ok := i.others[ref]; ok {
		step = "image volume lookup"
	}
	if err := i.l.step(step); err != nil {
		return image.Image{}, err
	}
	return i.fakeImages.Get(ctx, ref)
}

// holdStep tells a container's rootfs image hold from its image volume
// holds.
func holdStep(imageID, holder string) (step, key string) {
	if ctr, ok := strings.CutSuffix(holder, "/volume"); ok {
		return "image volume hold", ctr + " " + imageID
	}
	return "image hold", holder
}
func (i ledgerImages) Use(_ context.Context, imageID, holder string) error {
	return i.l.acquire(holdStep(imageID, holder))
}
func (i ledgerImages) Release(_ context.Context, imageID, holder string) error {
	i.l.release(holdStep(imageID, holder))
	return nil
}

type ledgerVolumes struct {
	*fakeVolumes
	l *ledger
}

// key names an image's mount in the ledger: the image, and the pod
// for a pod's own.
func (v ledgerVolumes) key(imageID, pod string) string {
	if pod == "" {
		return imageID
	}
	return imageID + "@" + pod
}
func (v ledgerVolumes) Mount(ctx context.Context, imageID string, opts ImageVolumeOptions) (string, error) {
	if err := v.l.acquire("image volume mount", v.key(imageID, opts.Pod)); err != nil {
		return "", err
	}
	return v.fakeVolumes.Mount(ctx, imageID, opts)
}
func (v ledgerVolumes) Unmount(ctx context.Context, imageID, pod string) error {
	v.l.release("image volume mount", v.key(imageID, pod))
	return v.fakeVolumes.Unmount(ctx, imageID, pod)
}

type ledgerRootfs struct {
	fakeRootfs
	l *ledger
}

func (r ledgerRootfs) Mount(ctx context.Context, id, imageID string, opts RootfsOptions) (string, error) {
	if err := r.l.acquire("rootfs", id); err != nil {
		return "", err
	}
	return r.fakeRootfs.Mount(ctx, id, imageID, opts)
}
func (r ledgerRootfs) Unmount(ctx context.Context, id string) error {
	r.l.release("rootfs", id)
	return r.fakeRootfs.Unmount(ctx, id)
}

// ledgerRecords fails the n-th container record write (a "container
// record" step); 0 never.
type ledgerRecords struct {
	Records
	l      *ledger
	failAt int
	writes *int
}

func (r ledgerRecords) PutContainer(c *meta.Container) error {
	*r.writes++
	if *r.writes == r.failAt {
		if err := r.l.step("container record"); err != nil {
			return err
		}
	}
	return r.Records.PutContainer(c)
}

// newLedgerEnv is a testEnv whose dependencies report to l.
func newLedgerEnv(t *testing.T, l *ledger) *testEnv {
	t.Helper()
	e := newTestEnv(t)
	e.s.podOS = ledgerPodOS{l: l}
	e.s.network = ledgerNetwork{l: l}
	e.s.shims = ledgerShims{fakeShims: e.shims, l: l}
	e.s.images = ledgerImages{fakeImages: e.images, l: l}
	e.s.rootfs = ledgerRootfs{fakeRootfs: e.s.rootfs.(fakeRootfs), l: l}
	e.s.volumes = ledgerVolumes{fakeVolumes: e.volumes, l: l}
	return e
}

// TestRunPodSandboxUndo fails each step of RunPodSandbox in turn: the call
// fails with the step's error, and nothing the earlier steps made is left:
// no namespaces, attachment or shim, no record, and the name is free again.
func TestRunPodSandboxUndo(t *testing.T) {
	steps := []string{"pod namespaces", "network", "hosts file", "shim", "pin pid namespace"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			l := newLedger()
			e := newLedgerEnv(t, l)
			l.fail = step
			cfg := podConfigFor("undo", runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD)
			_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if !errors.Is(err, errInjected) {
				t.Fatalf("RunPodSandbox with %s failing = %v, want the injected failure", step, err)
			}
			if !l.seen[step] {
				t.Fatalf("step %q never ran", step)
			}
			if held := l.held(); len(held) != 0 {
				t.Errorf("after %s failed, still held: %v", step, held)
			}
			if pods, err := e.s.meta.Pods(); err != nil || len(pods) != 0 {
				t.Errorf("after %s failed, pod records: %d (%v)", step, len(pods), err)
			}
			l.fail = ""
			if _, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg}); err != nil {
				t.Errorf("RunPodSandbox again after %s failed: %v (name still reserved?)", step, err)
			}
		})
	}
}

// TestCreateContainerUndo fails each step of CreateContainer in turn: no
// rootfs, image hold, shim container or record is left, and the name is
// free again.
func TestCreateContainerUndo(t *testing.T) {
	steps := []string{"image lookup", "image hold", "rootfs", "shim connect", "shim container", "container record"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			l := newLedger()
			e := newLedgerEnv(t, l)
			podCfg := podConfigFor("undo-ctr", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			podID := e.runPod(t, podCfg)
			before := l.held()
			l.fail = step
			cfg := ctrConfig("c", nil)
			cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
			if step == "container record" {
				// The second write: the record completed after the shim
				// created the container.
				var writes int
				e.s.meta = ledgerRecords{Records: e.s.meta, l: l, failAt: 2, writes: &writes}
			}
			_, err := e.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
			if !errors.Is(err, errInjected) {
				t.Fatalf("CreateContainer with %s failing = %v, want the injected failure", step, err)
			}
			if held := l.held(); fmt.Sprint(held) != fmt.Sprint(before) {
				t.Errorf("after %s failed, held %v; before the call %v", step, held, before)
			}
			if ctrs, err := e.s.meta.Containers(); err != nil || len(ctrs) != 0 {
				t.Errorf("after %s failed, container records: %d (%v)", step, len(ctrs), err)
			}
			l.fail = ""
			e.createContainer(t, podID, podCfg, ctrConfig("c", nil))
		})
	}
}

// TestCreateContainerUndoImageVolumes fails each step of creating a
// container with image volumes in turn: its image volume holds go, and
// the image's shared mount goes with them unless another container
// mounts the image too (then it stays). In a pod with a user namespace,
// with mounts that carry its mappings, the same holds for the pod's own
// idmapped mount of the image.
func TestCreateContainerUndoImageVolumes(t *testing.T) {
	steps := []string{"image lookup", "image volume lookup", "image hold", "rootfs", "image volume hold",
		"image volume mount", "shim connect", "shim container", "container record"}
	for _, userns := range []bool{false, true} {
		for _, shared := range []bool{false, true} {
			for _, step := range steps {
				t.Run(fmt.Sprintf("%s/shared=%v/userns=%v", step, shared, userns), func(t *testing.T) {
					testCreateContainerUndoImageVolumes(t, step, shared, userns)
				})
			}
		}
	}
}

func testCreateContainerUndoImageVolumes(t *testing.T, step string, shared, userns bool) {
	l := newLedger()
	e := newLedgerEnv(t, l)
	podCfg := podConfigFor("undo-vol", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	mount := volumeMount
	if userns {
		podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = podUserNS()
		mount = mappedVolumeMount
	}
	podID := e.runPod(t, podCfg)
	mountPod := "" // whose mount of the image the container uses
	if userns {
		mountPod = podID
	}
	if shared {
		e.createContainer(t, podID, podCfg, volumeConfig("other", mount("/vol", volumeImageRef, "")))
	}
	before := l.held()
	l.fail = step
	cfg := volumeConfig("c", mount("/vol", volumeImageRef, ""), mount("/sub", volumeImageID, "data/sub"))
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
	if step == "container record" {
		var writes int
		e.s.meta = ledgerRecords{Records: e.s.meta, l: l, failAt: 2, writes: &writes}
	}
	_, err := e.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if !errors.Is(err, errInjected) {
		t.Fatalf("CreateContainer with %s failing = %v, want the injected failure", step, err)
	}
	if !l.seen[step] {
		t.Fatalf("step %q never ran", step)
	}
	if held := l.held(); fmt.Sprint(held) != fmt.Sprint(before) {
		t.Errorf("after %s failed, held %v; before the call %v", step, held, before)
	}
	if got := e.volumes.mountedFor(volumeImageID, mountPod); got != shared {
		t.Errorf("after %s failed, image volume mounted = %v, want %v", step, got, shared)
	}
	if got := e.volumes.all(); len(got) != map[bool]int{false: 0, true: 1}[shared] {
		t.Errorf("after %s failed, image volume mounts %v", step, got)
	}
	if ctrs, err := e.s.meta.Containers(); err != nil || len(ctrs) != map[bool]int{false: 0, true: 1}[shared] {
		t.Errorf("after %s failed, container records: %d (%v)", step, len(ctrs), err)
	}
	l.fail = ""
	e.createContainer(t, podID, podCfg, volumeConfig("c", mount("/vol", volumeImageRef, "")))
}

// TestIdempotentCalls: stopping and removing twice, and unknown IDs,
// succeed, as the kubelet expects; everything is released once.
func TestIdempotentCalls(t *testing.T) {
	l := newLedger()
	e := newLedgerEnv(t, l)
	ctx := context.Background()
	podCfg := podConfigFor("idem", runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	ctrID := e.createContainer(t, podID, podCfg, ctrConfig("c", nil))
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID}); err != nil {
			t.Errorf("StopContainer #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
			t.Errorf("RemoveContainer #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if _, err := e.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("StopPodSandbox #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if _, err := e.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("RemovePodSandbox #%d: %v", i+1, err)
		}
	}
	if held := l.held(); len(held) != 0 {
		t.Errorf("after removing everything, still held: %v", held)
	}
	for _, id := range []string{"0123456789abcdef", "nope"} {
		if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("StopContainer of unknown %s: %v", id, err)
		}
		if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer of unknown %s: %v", id, err)
		}
		if _, err := e.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("StopPodSandbox of unknown %s: %v", id, err)
		}
		if _, err := e.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("RemovePodSandbox of unknown %s: %v", id, err)
		}
	}
}

// TestRecover rebuilds the daemon's view from the records: a pod a crash
// left half-created loses its network attachment, and the names of
// recorded pods and containers stay reserved.
func TestRecover(t *testing.T) {
	l := newLedger()
	e := newLedgerEnv(t, l)
	ctx := context.Background()
	podCfg := podConfigFor("kept", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	e.createContainer(t, podID, podCfg, ctrConfig("c", nil))

	// A pod whose RunPodSandbox crashed after CNI ADD.
	half := podConfigFor("half", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	halfID := e.runPod(t, half)
	rec, err := e.s.meta.Pod(halfID)
	if err != nil {
		t.Fatal(err)
	}
	rec.State = podNotReady
	if err := e.s.meta.PutPod(rec); err != nil {
		t.Fatal(err)
	}

	// A restarted daemon on the same records.
	restarted := New(Options{
		Images: e.s.images, Network: e.s.network, PodOS: e.s.podOS, Shims: e.s.shims, Rootfs: e.s.rootfs,
		Meta: e.s.meta, StateDir: e.s.stateDir, Log: e.s.log,
	})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := restarted.Recover(rctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.held() {
		if h == "network "+halfID {
			t.Errorf("the half-created pod keeps its network attachment after Recover")
		}
	}
	if rec, err := restarted.meta.Pod(halfID); err != nil || rec.NetworkSetUp {
		t.Errorf("half-created pod after Recover: %+v, %v; want NetworkSetUp false", rec, err)
	}
	if _, err := restarted.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg}); err == nil {
		t.Error("RunPodSandbox of a recorded pod's name succeeded after Recover")
	}
	cfg := ctrConfig("c", nil)
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
	if _, err := restarted.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg}); err == nil {
		t.Error("CreateContainer of a recorded container's name succeeded after Recover")
	}
}

// goneShim answers Connect, then is gone by the State call, as a shim that
// shuts down with its pod between the two.
type goneShim struct{ Shim }

func (goneShim) State(context.Context, string) (ContainerState, error) {
	return ContainerState{}, errdefs.Unavailable("shim at /x/shim.sock: dial: no such file or directory")
}

type goneShims struct{ *fakeShims }

func (s goneShims) Connect(ctx context.Context, podID string) (Shim, error) {
	sh, err := s.fakeShims.Connect(ctx, podID)
	return goneShim{sh}, err
}

// TestStateOfAContainerWhoseShimJustWent: a shim that goes away between
// Connect and State leaves the container reported by its exit record, not
// dropped from ListContainers.
func TestStateOfAContainerWhoseShimJustWent(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podCfg := podConfigFor("going", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	events, _, _ := e.subscribe(t, false)
	id := e.createContainer(t, podID, podCfg, ctrConfig("c", nil))
	e.shims.set(id, func(st *ContainerState) {
		st.Status, st.ExitCode, st.Reason, st.FinishedAt = StateExited, 0, "Completed", time.Now()
	})
	// The exit watch reads the shims too: let it publish the exit first.
	for ev := events.next(t); ev.ContainerId != id || ev.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT; ev = events.next(t) {
	}
	// The watch publishes and releases the container holding its lock.
	e.s.locks.lock(id)()
	e.s.shims = goneShims{e.shims}
	resp, err := e.s.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Containers) != 1 || resp.Containers[0].State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("ListContainers = %v, want the container, exited", resp.Containers)
	}
}
