package cri

import (
	"context"
	"fmt"
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
	root, err := filepath.EvalSymlinks(e.volumes.path(volumeImageID))
	if err != nil {
		t.Fatal(err)
	}
	for dst, src := range map[string]string{
		"/vol":  e.volumes.path(volumeImageID),
		"/sub":  filepath.Join(root, "data/sub"),
		"/in":   filepath.Join(root, "data/sub"),
		"/file": filepath.Join(root, "data/sub/file"),
		"/rw":   e.volumes.path(volumeImageID),
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

func (s racingShim) Create(ctx context.Context, req CreateRequest) error {
	if !s.vols.mounted(volumeImageID) {
		return errdefs.FailedPrecondition("container %s: its image volume is not mounted", req.ID)
	}
	return s.Shim.Create(ctx, req)
}

// TestImageVolumeCreateRemoveRace creates and removes containers that mount
// one image from several goroutines: every create finds the image mounted
// when the shim creates the container, and once all are removed the
// image is unmounted and unheld.
func TestImageVolumeCreateRemoveRace(t *testing.T) {
	e := newTestEnv(t)
	e.s.shims = racingShims{fakeShims: e.shims, vols: e.volumes}
	ctx := context.Background()
	podCfg := podConfigFor("race", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	const workers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				cfg := volumeConfig(fmt.Sprintf("c%d-%d", w, r), volumeMount("/vol", volumeImageRef, "data"))
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
	if e.volumes.mounted(volumeImageID) {
		t.Error("image mounted after every container was removed")
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
