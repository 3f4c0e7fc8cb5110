package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/image"
)

// volumeMount is an image volume mount as the kubelet sends it: read-only.
func volumeMount(dst, ref, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub, Readonly: true}
}

// podIDMap is the ID mapping of the test pods with a user namespace.
var podIDMap = []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1 << 18, Length: 65536}}

// podUserNS is the user namespace options of a hostUsers: false pod.
func podUserNS() *runtimeapi.UserNamespace {
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: podIDMap, Gids: podIDMap}
}

// mapped gives m the pod's ID mappings, as the kubelet does to every
// mount of a pod with a user namespace.
func mapped(m *runtimeapi.Mount) *runtimeapi.Mount {
	m.UidMappings, m.GidMappings = podIDMap, podIDMap
	return m
}

// mappedVolumeMount is an image volume mount of a pod with a user
// namespace.
func mappedVolumeMount(dst, ref, sub string) *runtimeapi.Mount {
	return mapped(volumeMount(dst, ref, sub))
}

func volumeConfig(name string, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	cfg := ctrConfig(name, nil)
	cfg.Mounts = mounts
	return cfg
}

// specMount is the mount of the container's spec at dst.
func (e *testEnv) specMount(t *testing.T, id, dst string) specs.Mount {
	t.Helper()
	e.shims.mu.Lock()
	defer e.shims.mu.Unlock()
	for _, m := range e.shims.specs[id].Spec.Mounts {
		if m.Destination == dst {
			return m
		}
	}
	t.Fatalf("container %s has no mount at %s", id, dst)
	return specs.Mount{}
}

func (e *testEnv) removeContainer(t *testing.T, id string) {
	t.Helper()
	if _, err := e.s.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer %s: %v", id, err)
	}
}

func (e *testEnv) removeImage(ref string) error {
	_, err := e.s.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

// TestCreateContainerWithImageVolumes: the record lists the image once
// however many mounts name it (by reference or ID), the container holds
// it apart from its rootfs image, the image is mounted once, and each
// mount binds the image or its sub path read-only.
func TestCreateContainerWithImageVolumes(t *testing.T) {
	e := newTestEnv(t)
	podCfg := podConfigFor("vol", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	rw := volumeMount("/rw", volumeImageRef, "")
	rw.Readonly = false
	id := e.createContainer(t, podID, podCfg, volumeConfig("c",
		volumeMount("/vol", volumeImageRef, ""),
		volumeMount("/sub", volumeImageID, "data/sub"),
		volumeMount("/in", volumeImageRef, "inside"),
		volumeMount("/file", volumeImageRef, "data/sub/file"),
		rw,
	))

	rec, err := e.s.meta.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.ImageVolumes, []string{volumeImageID}) {
		t.Errorf("record lists image volumes %v, want [%s]", rec.ImageVolumes, volumeImageID)
	}
	if want := []string{id + " sha256:1111", id + "/volume " + volumeImageID}; !slices.Equal(e.images.held(), want) {
		t.Errorf("holds %v, want %v", e.images.held(), want)
	}
	if mounts, _ := e.volumes.counts(); mounts != 1 || !e.volumes.mounted(volumeImageID) {
		t.Errorf("image mounted %d times (mounted now: %v), want once", mounts, e.volumes.mounted(volumeImageID))
	}
	root, err := filepath.EvalSymlinks(e.volumes.path(volumeImageID, ""))
	if err != nil {
		t.Fatal(err)
	}
	for dst, src := range map[string]string{
		"/vol":  e.volumes.path(volumeImageID, ""),
		"/sub":  filepath.Join(root, "data/sub"),
		"/in":   filepath.Join(root, "data/sub"),
		"/file": filepath.Join(root, "data/sub/file"),
		"/rw":   e.volumes.path(volumeImageID, ""),
	} {
		m := e.specMount(t, id, dst)
		if m.Type != "bind" || m.Source != src || !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rw") {
			t.Errorf("mount %s = %+v, want a read-only bind of %s", dst, m, src)
		}
	}

	// RemoveContainer unmounts the image it alone mounted and releases
	// both holds.
	e.removeContainer(t, id)
	if e.volumes.mounted(volumeImageID) {
		t.Error("image still mounted after its only container was removed")
	}
	if held := e.images.held(); len(held) != 0 {
		t.Errorf("holds after RemoveContainer: %v", held)
	}
}

// TestImageVolumeOfTheRootfsImage: a container may mount its own image as
// a volume; the two holds are apart and both go with the container.
func TestImageVolumeOfTheRootfsImage(t *testing.T) {
	e := newTestEnv(t)
	podCfg := podConfigFor("own", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	own := e.images.img
	e.images.others = map[string]image.Image{own.ID: own}
	id := e.createContainer(t, podID, podCfg, volumeConfig("c", volumeMount("/self", own.ID, "")))
	if want := []string{id + " " + own.ID, id + "/volume " + own.ID}; !slices.Equal(e.images.held(), want) {
		t.Errorf("holds %v, want %v", e.images.held(), want)
	}
	e.removeContainer(t, id)
	if held := e.images.held(); len(held) != 0 {
		t.Errorf("holds after RemoveContainer: %v", held)
	}
}

// TestImageVolumeSharedAndRemoveImage: two containers share one mount;
// the first RemoveContainer keeps it, the last unmounts it. RemoveImage
// of the image is refused while any record lists it, whatever the
// container's state, and succeeds after; a rootfs image may go as today.
func TestImageVolumeSharedAndRemoveImage(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podCfg := podConfigFor("shared", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	a := e.createContainer(t, podID, podCfg, volumeConfig("a", volumeMount("/vol", volumeImageRef, "")))
	b := e.createContainer(t, podID, podCfg, volumeConfig("b", volumeMount("/data", volumeImageID, "data")))
	if mounts, _ := e.volumes.counts(); mounts != 1 {
		t.Errorf("image mounted %d times for two containers, want once", mounts)
	}
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: b}); err != nil {
		t.Fatal(err)
	}

	if err := e.removeImage("busybox"); err != nil {
		t.Errorf("RemoveImage of the containers' rootfs image: %v", err)
	}
	for _, ref := range []string{volumeImageRef, volumeImageID} {
		err := e.removeImage(ref)
		if grpcCode(err) != codes.FailedPrecondition {
			t.Fatalf("RemoveImage %s while mounted = %v, want FailedPrecondition", ref, err)
		}
		if !strings.Contains(err.Error(), "remove image "+ref+": mounted as an image volume by container ") {
			t.Errorf("RemoveImage %s: message %q", ref, err)
		}
	}

	e.removeContainer(t, a)
	if !e.volumes.mounted(volumeImageID) {
		t.Fatal("the first RemoveContainer unmounted an image another container mounts")
	}
	if _, unmounts := e.volumes.counts(); unmounts != 0 {
		t.Errorf("%d unmounts with a container left", unmounts)
	}
	// Stopped (exited), not removed: still refused.
	if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: b}); err != nil {
		t.Fatal(err)
	}
	if err := e.removeImage(volumeImageRef); grpcCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), b) {
		t.Fatalf("RemoveImage with an exited container mounting it = %v, want FailedPrecondition naming %s", err, b)
	}

	e.removeContainer(t, b)
	if e.volumes.mounted(volumeImageID) {
		t.Error("the last RemoveContainer left the image mounted")
	}
	if held := e.images.held(); len(held) != 0 {
		t.Errorf("holds after removing both containers: %v", held)
	}
	if err := e.removeImage(volumeImageRef); err != nil {
		t.Fatalf("RemoveImage after the containers went: %v", err)
	}
	if !slices.Contains(e.images.removed, volumeImageID) {
		t.Errorf("image store removals %v, want %s", e.images.removed, volumeImageID)
	}
}

// TestImageVolumeRefused: bad sub paths, an unknown image, bidirectional
// propagation and a server without image volumes fail CreateContainer
// with the right code and a message naming what was wrong, leaving no
// record, hold or mount.
func TestImageVolumeRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mount    *runtimeapi.Mount
		noVols   bool
		code     codes.Code
		mentions []string
	}{
		{name: "sub path climbs", mount: volumeMount("/v", volumeImageRef, "../x"), code: codes.InvalidArgument, mentions: []string{`"../x"`, volumeImageRef}},
		{name: "sub path climbs inside", mount: volumeMount("/v", volumeImageRef, "data/../../x"), code: codes.InvalidArgument, mentions: []string{`"data/../../x"`, volumeImageRef}},
		{name: "sub path absolute", mount: volumeMount("/v", volumeImageRef, "/data"), code: codes.InvalidArgument, mentions: []string{`"/data"`, volumeImageRef}},
		{name: "sub path not clean", mount: volumeMount("/v", volumeImageRef, "data//sub"), code: codes.InvalidArgument, mentions: []string{`"data//sub"`, volumeImageRef}},
		{name: "sub path missing", mount: volumeMount("/v", volumeImageRef, "data/none"), code: codes.InvalidArgument, mentions: []string{`"data/none"`, volumeImageRef}},
		{name: "symlink out of the image", mount: volumeMount("/v", volumeImageRef, "outside"), code: codes.InvalidArgument, mentions: []string{`"outside"`, volumeImageRef}},
		{name: "absolute symlink", mount: volumeMount("/v", volumeImageRef, "absolute"), code: codes.InvalidArgument, mentions: []string{`"absolute"`, volumeImageRef}},
		{name: "unknown image", mount: volumeMount("/v", "unknown/data:1", ""), code: codes.NotFound, mentions: []string{"unknown/data:1"}},
		{name: "bidirectional", mount: func() *runtimeapi.Mount {
			m := volumeMount("/v", volumeImageRef, "")
			m.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			return m
		}(), code: codes.InvalidArgument, mentions: []string{"bidirectional", volumeImageRef}},
		{name: "not supported", mount: volumeMount("/v", volumeImageRef, ""), noVols: true, code: codes.Unimplemented, mentions: []string{volumeImageRef}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			if tc.noVols {
				e.s.volumes = nil
			}
			podCfg := podConfigFor("bad", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			podID := e.runPod(t, podCfg)
			cfg := volumeConfig("c", tc.mount)
			cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
			_, err := e.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
			if grpcCode(err) != tc.code {
				t.Fatalf("CreateContainer = %v (code %v), want code %v", err, grpcCode(err), tc.code)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %s", err, m)
				}
			}
			if ctrs, err := e.s.meta.Containers(); err != nil || len(ctrs) != 0 {
				t.Errorf("container records left: %d (%v)", len(ctrs), err)
			}
			if held := e.images.held(); len(held) != 0 {
				t.Errorf("holds left: %v", held)
			}
			if e.volumes.mounted(volumeImageID) {
				t.Error("image left mounted")
			}
		})
	}
}

// TestImageVolumesUserNamespace: in a pod with a user namespace, image
// volumes with the pod's ID mappings are bound from the pod's own mount of
// the image, made with the pod's user namespace and shared by the pod's
// containers, and the binds carry no mappings (the executor must not idmap
// an idmapped mount again); a mount without mappings, and containers of a
// pod without a user namespace, use the image's plain mount. Each mount
// goes with the last record that lists it; RemoveImage is refused while
// any record lists either.
func TestImageVolumesUserNamespace(t *testing.T) {
	e := newTestEnv(t)
	userPod := func(name string) (string, *runtimeapi.PodSandboxConfig) {
		cfg := podConfigFor(name, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = podUserNS()
		return e.runPod(t, cfg), cfg
	}
	pod1, cfg1 := userPod("userns-1")
	pod2, cfg2 := userPod("userns-2")
	plainCfg := podConfigFor("plain", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	plainPod := e.runPod(t, plainCfg)

	a := e.createContainer(t, pod1, cfg1, volumeConfig("a",
		mappedVolumeMount("/vol", volumeImageRef, ""),
		mappedVolumeMount("/sub", volumeImageID, "data/sub"),
		volumeMount("/unmapped", volumeImageRef, ""),
	))
	b := e.createContainer(t, pod1, cfg1, volumeConfig("b", mappedVolumeMount("/vol", volumeImageRef, "inside")))
	c := e.createContainer(t, pod2, cfg2, volumeConfig("c", mappedVolumeMount("/vol", volumeImageRef, "")))
	n := e.createContainer(t, plainPod, plainCfg, volumeConfig("n", volumeMount("/vol", volumeImageRef, "")))

	rec, err := e.s.meta.Container(a)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.ImageVolumes, []string{volumeImageID}) || !slices.Equal(rec.IDMappedImageVolumes, []string{volumeImageID}) {
		t.Errorf("a's record lists image volumes %v and idmapped %v, want the image in both", rec.ImageVolumes, rec.IDMappedImageVolumes)
	}
	if rec, err := e.s.meta.Container(b); err != nil || len(rec.ImageVolumes) != 0 || !slices.Equal(rec.IDMappedImageVolumes, []string{volumeImageID}) {
		t.Errorf("b's record lists image volumes %v and idmapped %v (%v), want the image idmapped only", rec.ImageVolumes, rec.IDMappedImageVolumes, err)
	}
	if mounts, _ := e.volumes.counts(); mounts != 3 {
		t.Errorf("%d mounts (%v), want 3: the image's, pod 1's and pod 2's", mounts, e.volumes.all())
	}
	for pod, want := range map[string]string{pod1: filepath.Join(e.s.podDir(pod1), "ns/user"), pod2: filepath.Join(e.s.podDir(pod2), "ns/user")} {
		if got := e.volumes.madeWith(volumeImageID, pod); got != want {
			t.Errorf("pod %s's mount made with user namespace %q, want the pod's %q", pod, got, want)
		}
	}
	resolved := func(pod, sub string) string {
		root, err := filepath.EvalSymlinks(e.volumes.path(volumeImageID, pod))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(root, sub)
	}
	for _, tc := range []struct {
		ctr, dst, src string
		idmapped      bool
	}{
		{a, "/vol", e.volumes.path(volumeImageID, pod1), true},
		{a, "/sub", resolved(pod1, "data/sub"), true},
		{a, "/unmapped", e.volumes.path(volumeImageID, ""), false},
		{b, "/vol", resolved(pod1, "data/sub"), true},
		{c, "/vol", e.volumes.path(volumeImageID, pod2), true},
		{n, "/vol", e.volumes.path(volumeImageID, ""), false},
	} {
		m := e.specMount(t, tc.ctr, tc.dst)
		if m.Source != tc.src || !slices.Contains(m.Options, "ro") || len(m.UIDMappings)+len(m.GIDMappings) != 0 {
			t.Errorf("container %s mount %s = %+v, want a read-only bind of %s without ID mappings", tc.ctr, tc.dst, m, tc.src)
		}
	}
	if held := e.images.held(); len(held) != 8 {
		t.Errorf("holds %v, want each container's rootfs image and volume image once", held)
	}

	// n and a go: the plain mount with a, the last to list it; pod 1's
	// stays for b.
	e.removeContainer(t, n)
	if !e.volumes.mounted(volumeImageID) {
		t.Fatal("the image's mount went while a still lists it")
	}
	e.removeContainer(t, a)
	if e.volumes.mounted(volumeImageID) {
		t.Error("the image's mount stayed after the last container listing it went")
	}
	if !e.volumes.mountedFor(volumeImageID, pod1) || !e.volumes.mountedFor(volumeImageID, pod2) {
		t.Fatal("a pod's mount went while a container of the pod lists it")
	}
	err = e.removeImage(volumeImageRef)
	if grpcCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "mounted as an image volume by container ") {
		t.Fatalf("RemoveImage while pods' mounts are listed = %v, want FailedPrecondition", err)
	}
	e.removeContainer(t, b)
	if e.volumes.mountedFor(volumeImageID, pod1) {
		t.Error("pod 1's mount stayed after its last container went")
	}
	if !e.volumes.mountedFor(volumeImageID, pod2) {
		t.Fatal("pod 1's last container took pod 2's mount")
	}
	e.removeContainer(t, c)
	if got := e.volumes.all(); len(got) != 0 {
		t.Errorf("mounts after every container went: %v", got)
	}
	if mounts, unmounts := e.volumes.counts(); mounts != unmounts {
		t.Errorf("%d mounts but %d unmounts", mounts, unmounts)
	}
	if held := e.images.held(); len(held) != 0 {
		t.Errorf("holds after every container went: %v", held)
	}
	if err := e.removeImage(volumeImageRef); err != nil {
		t.Fatalf("RemoveImage after the containers went: %v", err)
	}
}

// TestImageVolumeUserNamespaceRefused: mappings other than the pod's, or
// mappings in a pod without a user namespace, fail CreateContainer with
// InvalidArgument and leave no record, hold or mount.
func TestImageVolumeUserNamespaceRefused(t *testing.T) {
	other := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1 << 20, Length: 65536}}
	for _, tc := range []struct {
		name   string
		userns bool
		mount  *runtimeapi.Mount
	}{
		{"other mappings", true, func() *runtimeapi.Mount {
			m := volumeMount("/v", volumeImageRef, "")
			m.UidMappings, m.GidMappings = other, other
			return m
		}()},
		{"uid mappings only", true, func() *runtimeapi.Mount {
			m := volumeMount("/v", volumeImageRef, "")
			m.UidMappings = podIDMap
			return m
		}()},
		{"mappings without a user namespace", false, mappedVolumeMount("/v", volumeImageRef, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			podCfg := podConfigFor("bad", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			if tc.userns {
				podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = podUserNS()
			}
			podID := e.runPod(t, podCfg)
			cfg := volumeConfig("c", tc.mount)
			cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
			_, err := e.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
			if grpcCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "/v") {
				t.Fatalf("CreateContainer = %v, want InvalidArgument naming the mount", err)
			}
			if ctrs, err := e.s.meta.Containers(); err != nil || len(ctrs) != 0 {
				t.Errorf("container records left: %d (%v)", len(ctrs), err)
			}
			if held := e.images.held(); len(held) != 0 {
				t.Errorf("holds left: %v", held)
			}
			if got := e.volumes.all(); len(got) != 0 {
				t.Errorf("mounts left: %v", got)
			}
		})
	}
}

// racingShims check, when a container is created, that the image volume
// sources of its spec are there: a RemoveContainer racing the create must
// not have unmounted them.
type racingShims struct {
	*fakeShims
	vols *fakeVolumes
}

func (s racingShims) Connect(ctx context.Context, podID string) (Shim, error) {
	sh, err := s.fakeShims.Connect(ctx, podID)
	return racingShim{Shim: sh, vols: s.vols}, err
}

type racingShim struct {
	Shim
	vols *fakeVolumes
}

func (s racingShim) Create(ctx context.Context, req CreateRequest) (ContainerState, error) {
	for _, m := range req.Spec.Mounts {
		if _, err := os.Stat(m.Source); strings.HasPrefix(m.Source, s.vols.dir) && err != nil {
			return ContainerState{}, errdefs.FailedPrecondition("container %s: its image volume %s is not mounted", req.ID, m.Destination)
		}
	}
	return s.Shim.Create(ctx, req)
}

// TestImageVolumeCreateRemoveRace creates and removes containers that mount
// one image from several goroutines: every create finds the image mounted
// when the shim creates the container, and once all are removed the
// image is unmounted and unheld. The same goes for the pod's own mount of
// the image in a pod with a user namespace.
func TestImageVolumeCreateRemoveRace(t *testing.T) {
	for _, userns := range []bool{false, true} {
		t.Run(fmt.Sprintf("userns=%v", userns), func(t *testing.T) { testImageVolumeCreateRemoveRace(t, userns) })
	}
}

func testImageVolumeCreateRemoveRace(t *testing.T, userns bool) {
	e := newTestEnv(t)
	e.s.shims = racingShims{fakeShims: e.shims, vols: e.volumes}
	ctx := context.Background()
	podCfg := podConfigFor("race", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	mount := volumeMount
	if userns {
		podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = podUserNS()
		mount = mappedVolumeMount
	}
	podID := e.runPod(t, podCfg)
	const workers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				cfg := volumeConfig(fmt.Sprintf("c%d-%d", w, r), mount("/vol", volumeImageRef, "data"))
				cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
				resp, err := e.s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
				if err != nil {
					errs <- err
					continue
				}
				if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: resp.ContainerId}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.volumes.all(); len(got) != 0 {
		t.Errorf("image mounted after every container was removed: %v", got)
	}
	if held := e.images.held(); len(held) != 0 {
		t.Errorf("holds left: %v", held)
	}
	mounts, unmounts := e.volumes.counts()
	t.Logf("%d creates and removes: %d mounts, %d unmounts", workers*rounds, mounts, unmounts)
	if mounts != unmounts {
		t.Errorf("%d mounts but %d unmounts", mounts, unmounts)
	}
}
