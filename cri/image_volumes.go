package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/image/volume"
	"github.com/skiffcri/skiff/meta"
)

// Image volumes (KEP-4639, CRI Mount.image): the kubelet pulls the image,
// then asks for a mount of it, or of a sub path of it, in a container.
// Each image is mounted read-only once (s.volumes) and bound into every
// container that mounts it. A container's record lists the images it
// mounts so; the mount goes when the last record listing it goes, and an
// image listed by any record cannot be removed. Each container also holds
// each such image in the image store under imageVolumeHolder, so that the
// layers stay however the image's references change.
//
// Ordering: CreateContainer writes the record that lists an image before
// it mounts the image, under the image's volume lock. RemoveContainer,
// under the same lock, unmounts only when no other record lists the image,
// and deletes its record before it lets go of the lock. So a remove never
// unmounts what a create has just mounted for its container (either the
// remove sees the create's record, or the create mounts after the remove
// unmounted), and of two removes the second sees the first's record gone.

// imageVolume is one image volume mount of a container.
type imageVolume struct {
	dst     string // clean container path
	ref     string // the image as the kubelet named it
	imageID string
	subPath string
}

// imageVolumeHolder holds a container's image volumes in the image store,
// apart from its rootfs image (held by the container's ID): a container
// may mount its own image as a volume, and each hold goes on its own.
func imageVolumeHolder(ctrID string) string { return ctrID + "/volume" }

// imageVolumes resolves the images of cfg's image volume mounts. An image
// the store does not have is an error naming it (not found): the kubelet
// pulls before it creates.
func (s *Server) imageVolumes(ctx context.Context, cfg *runtimeapi.ContainerConfig) ([]imageVolume, error) {
	var out []imageVolume
	for _, m := range cfg.GetMounts() {
		ref := m.GetImage().GetImage()
		if ref == "" {
			continue
		}
		if s.volumes == nil {
			return nil, errdefs.Unimplemented("image volume mounts (%s of image %s) are not supported", m.GetContainerPath(), ref)
		}
		img, err := s.images.Get(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", m.GetContainerPath(), err)
		}
		out = append(out, imageVolume{dst: filepath.Clean(m.GetContainerPath()), ref: ref, imageID: img.ID, subPath: m.GetImageSubPath()})
	}
	return out, nil
}

// imageVolumeIDs are the images of vols, each once, as the container's
// record lists them.
func imageVolumeIDs(vols []imageVolume) []string {
	var ids []string
	for _, v := range vols {
		if !slices.Contains(ids, v.imageID) {
			ids = append(ids, v.imageID)
		}
	}
	return ids
}

// mountImageVolumes holds and mounts the images of container ctrID's image
// volumes, whose record lists them already, and returns the bind sources
// by container path for the spec. deleteContainerRecord undoes it.
func (s *Server) mountImageVolumes(ctx context.Context, ctrID string, vols []imageVolume) (map[string]string, error) {
	if len(vols) == 0 {
		return nil, nil
	}
	mounts := map[string]string{}
	for _, imageID := range imageVolumeIDs(vols) {
		p, err := s.mountImageVolume(ctx, ctrID, imageID)
		if err != nil {
			return nil, err
		}
		mounts[imageID] = p
	}
	sources := make(map[string]string, len(vols))
	for _, v := range vols {
		src, err := volume.SubPath(mounts[v.imageID], v.subPath)
		if err != nil {
			return nil, fmt.Errorf("image volume %s of image %s (%s): %w", v.dst, v.ref, v.imageID, err)
		}
		sources[v.dst] = src
	}
	return sources, nil
}

func (s *Server) mountImageVolume(ctx context.Context, ctrID, imageID string) (string, error) {
	unlock := s.volumeLocks.lock(imageID)
	defer unlock()
	// Under the lock, the hold fails if RemoveImage removed the image
	// after this container's lookup: RemoveImage checks the records under
	// the same lock, and this record was not there yet.
	if err := s.images.Use(ctx, imageID, imageVolumeHolder(ctrID)); err != nil {
		return "", fmt.Errorf("image volume %s: %w", imageID, err)
	}
	p, err := s.volumes.Mount(ctx, imageID)
	if err != nil {
		return "", fmt.Errorf("image volume %s: %w", imageID, err)
	}
	return p, nil
}

// deleteContainerRecord deletes rec's record, after unmounting the image
// volumes that no other record lists and dropping rec's holds on them;
// RemoveContainer ends with it, and a failed CreateContainer undoes its
// record with it. The volume locks of rec's images are held throughout,
// so that of two containers going at once, the second finds the first's
// record gone and unmounts. A failed unmount keeps the record, for the
// next RemoveContainer to try again.
func (s *Server) deleteContainerRecord(ctx context.Context, rec *meta.Container) error {
	unlock := s.lockImageVolumes(rec.ImageVolumes)
	defer unlock()
	for _, imageID := range rec.ImageVolumes {
		user, err := s.imageVolumeUser(imageID, rec.ID)
		if err != nil {
			return err
		}
		if user == "" && s.volumes != nil {
			if err := s.volumes.Unmount(ctx, imageID); err != nil {
				return fmt.Errorf("container %s: image volume %s: %w", rec.ID, imageID, err)
			}
		}
		// Released whether or not the mount stays: the other container
		// holds the image itself.
		if err := s.images.Release(ctx, imageID, imageVolumeHolder(rec.ID)); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("release image volume", "container", rec.ID, "image", imageID, "err", err)
		}
	}
	if err := s.meta.DeleteContainer(rec.ID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// lockImageVolumes takes the volume locks of imageIDs in sorted order, the
// one order in which anything takes more than one; it returns the unlock.
func (s *Server) lockImageVolumes(imageIDs []string) func() {
	ids := slices.Compact(slices.Sorted(slices.Values(imageIDs)))
	unlocks := make([]func(), 0, len(ids))
	for _, id := range ids {
		unlocks = append(unlocks, s.volumeLocks.lock(id))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// imageVolumeUser is a container other than except whose record lists
// imageID as an image volume, "" when there is none. Must be called with
// imageID's volume lock held.
func (s *Server) imageVolumeUser(imageID, except string) (string, error) {
	ctrs, err := s.meta.Containers()
	if err != nil {
		return "", fmt.Errorf("containers mounting image %s: %w", imageID, err)
	}
	for _, c := range ctrs {
		if c.ID != except && slices.Contains(c.ImageVolumes, imageID) {
			return c.ID, nil
		}
	}
	return "", nil
}
