package e2e

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestImageCRI(t *testing.T) {
	d := startDaemon(t)
	ctx := ctxT(t, 5*time.Minute)

	// Two tags of one image (the test registry serves the same busybox
	// under both), pulled by upstream name through the mirror.
	const tagA, tagB = "docker.io/library/busybox:1.36", "docker.io/library/busybox:1.37.0"
	idA := d.pull(t, tagA)
	idB := d.pull(t, tagB)
	if idA != idB {
		t.Fatalf("PullImage: %s and %s are one image in the test registry but got refs %s and %s", tagA, tagB, idA, idB)
	}
	// A direct pull from the registry's own address (insecure registry).
	direct := testReg.Ref("registry.k8s.io/pause:3.10")
	pauseID := d.pull(t, direct)

	list, err := d.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	var bb *runtimeapi.Image
	for _, img := range list.Images {
		if img.Id == idA {
			bb = img
		}
	}
	if bb == nil {
		t.Fatalf("ListImages: %s missing from %v", idA, list.Images)
	}
	for _, tag := range []string{tagA, tagB} {
		if !slices.Contains(bb.RepoTags, tag) {
			t.Errorf("ListImages: busybox RepoTags %v lack %s", bb.RepoTags, tag)
		}
	}
	if len(bb.RepoDigests) == 0 || bb.Size == 0 {
		t.Errorf("ListImages: busybox has RepoDigests %v and size %d, want both set", bb.RepoDigests, bb.Size)
	}
	filtered, err := d.img.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: direct}}})
	if err != nil {
		t.Fatalf("ListImages with filter: %v", err)
	}
	if len(filtered.Images) != 1 || filtered.Images[0].Id != pauseID {
		t.Errorf("ListImages filter %s: got %v, want only %s", direct, filtered.Images, pauseID)
	}

	st, err := d.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tagA}, Verbose: true})
	if err != nil {
		t.Fatalf("ImageStatus: %v", err)
	}
	if st.Image == nil || st.Image.Id != idA {
		t.Fatalf("ImageStatus %s: image %v, want id %s", tagA, st.Image, idA)
	}
	if len(st.Info) == 0 {
		t.Errorf("ImageStatus verbose: no info")
	}
	missing, err := d.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/skiff-never-pulled:1"}})
	if err != nil || missing.Image != nil {
		t.Errorf("ImageStatus of an unknown image: %v, %v; want empty status, no error", missing, err)
	}

	fs, err := d.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatalf("ImageFsInfo: %v", err)
	}
	if len(fs.ImageFilesystems) == 0 {
		t.Fatal("ImageFsInfo: no image filesystem")
	}
	u := fs.ImageFilesystems[0]
	if u.GetUsedBytes().GetValue() == 0 || u.GetInodesUsed().GetValue() == 0 || u.GetFsId().GetMountpoint() == "" {
		t.Errorf("ImageFsInfo: %v, want used bytes, inodes and a mountpoint", u)
	}

	// Removing by one tag removes the image with all its tags, as
	// containerd's CRI does.
	if _, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: tagA}}); err != nil {
		t.Fatalf("RemoveImage %s: %v", tagA, err)
	}
	for _, ref := range []string{tagA, tagB, idA} {
		st, err := d.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil {
			t.Errorf("ImageStatus %s after remove: %v", ref, err)
		} else if st.Image != nil {
			t.Errorf("ImageStatus %s after removing %s: still present with tags %v", ref, tagA, st.Image.RepoTags)
		}
	}
	// By ID, and again (already gone succeeds).
	for i := 0; i < 2; i++ {
		if _, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: pauseID}}); err != nil {
			t.Errorf("RemoveImage %s (#%d): %v", pauseID, i+1, err)
		}
	}
	list, err = d.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if len(list.Images) != 0 {
		t.Errorf("ListImages after removing everything: %v", list.Images)
	}

	_, err = d.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: testReg.Addr() + "/skiff-e2e/no-such-image:1"}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("PullImage of a missing image: %v, want code NotFound", err)
	}
}
