package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// RemoveImage removes the image a reference resolves to, with every tag and
// digest that names it (as containerd does: the kubelet removes images, not
// tags). It is idempotent: removing an image that is not there succeeds.
// An image that a container mounts as an image volume is refused.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, errdefs.InvalidArgument("remove image: image reference is empty")
	}
	img, err := s.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remove image %q: %w", ref, err)
	}
	// An image mounted as an image volume stays while a container record
	// lists it, whatever state the container is in; a container's rootfs
	// image may go, its layers held by the container. Under the image's
	// volume lock, so that no create mounts it meanwhile.
	unlock := s.volumeLocks.lock(img.ID)
	defer unlock()
	user, err := s.imageVolumeUser(img.ID, "", listsImage(img.ID))
	if err != nil {
		return nil, fmt.Errorf("remove image %s: %w", ref, err)
	}
	if user != "" {
		return nil, errdefs.FailedPrecondition("remove image %s: mounted as an image volume by container %s", ref, user)
	}
	if err := s.images.Remove(ctx, img.ID); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("remove image %q (%s): %w", ref, img.ID, err)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
