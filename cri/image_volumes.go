package cri

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/image/volume"
	"github.com/skiffcri/skiff/meta"
)

// Image volumes (KEP-4639, CRI Mount.image): the kubelet pulls the image,
// then asks for a mount of it, or of a sub path of it, in a container.
// Each image is mounted read-only once (s.volumes) and bound into every
// container that mounts it. In a pod with a user namespace, a mount that
// carries ID mappings (the kubelet sets the pod's on every mount of such a
// pod) is bound instead from the pod's own mount of the image, whose
// layers are idmapped with the pod's user namespace so that the image's
// root-owned files belong to the pod's root; the pod's containers share
// it. The executor cannot idmap the bind of the image's shared mount as it
// does other volumes': overlayfs does not allow idmapping an overlay,
// which the mount of a multi-layer image is.
//
// A container's record lists the mounts it uses (ImageVolumes: images'
// shared mounts; IDMappedImageVolumes: its pod's); a mount goes when the
// last record listing it goes, and an image listed by any record cannot be
// removed. Each container also holds each such image in the image store
// under imageVolumeHolder, so that the layers stay however the image's
// references change.
//
// Ordering: CreateContainer writes the record that lists a mount before it
// mounts it, under the image's volume lock (one lock for all the image's
// mounts). RemoveContainer, under the same lock, unmounts only when no
// other record lists the mount, and deletes its record before it lets go
// of the lock. So a remove never unmounts what a create has just mounted
// for its container (either the remove sees the create's record, or the
// create mounts after the remove unmounted), and of two removes the second
// sees the first's record gone.

// imageVolume is one image volume mount of a container.
type imageVolume struct {
	dst     string // clean container path
	ref     string // the image as the kubelet named it
	imageID string
	subPath string
	// idmapped: bound from the pod's own mount of the image, idmapped with
	// the pod's user namespace, for the mount carries ID mappings in a pod
	// with one (spec generation checks that they are the pod's).
	idmapped bool
}

// volumeKey names one shared mount of an image: the image's own (pod
// empty), or pod's, idmapped with the pod's user namespace.
type volumeKey struct{ imageID, pod string }

func (k volumeKey) String() string {
	if k.pod == "" {
		return k.imageID
	}
	return k.imageID + " (idmapped for pod " + k.pod + ")"
}

// usedBy reports whether c's record lists the mount.
func (k volumeKey) usedBy(c *meta.Container) bool {
	if k.pod == "" {
		return slices.Contains(c.ImageVolumes, k.imageID)
	}
	return c.PodID == k.pod && slices.Contains(c.IDMappedImageVolumes, k.imageID)
}

// volumeKeys are the shared mounts rec lists.
func volumeKeys(rec *meta.Container) []volumeKey {
	keys := make([]volumeKey, 0, len(rec.ImageVolumes)+len(rec.IDMappedImageVolumes))
	for _, id := range rec.ImageVolumes {
		keys = append(keys, volumeKey{imageID: id})
	}
	for _, id := range rec.IDMappedImageVolumes {
		keys = append(keys, volumeKey{imageID: id, pod: rec.PodID})
	}
	return keys
}

// volumeImages are the images rec mounts as image volumes, either way,
// each once.
func volumeImages(rec *meta.Container) []string {
	return slices.Compact(slices.Sorted(slices.Values(slices.Concat(rec.ImageVolumes, rec.IDMappedImageVolumes))))
}

// listsImage reports whether c's record lists a mount of imageID.
func listsImage(imageID string) func(c *meta.Container) bool {
	return func(c *meta.Container) bool { return slices.Contains(volumeImages(c), imageID) }
}

// imageVolumeHolder holds a container's image volumes in the image store,
// apart from its rootfs image (held by the container's ID): a container
// may mount its own image as a volume, and each hold goes on its own.
func imageVolumeHolder(ctrID string) string { return ctrID + "/volume" }

// imageVolumes resolves the images of cfg's image volume mounts in pod. An
// image the store does not have is an error naming it (not found): the
// kubelet pulls before it creates.
func (s *Server) imageVolumes(ctx context.Context, pod *meta.Pod, cfg *runtimeapi.ContainerConfig) ([]imageVolume, error) {
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
		out = append(out, imageVolume{
			dst: filepath.Clean(m.GetContainerPath()), ref: ref, imageID: img.ID, subPath: m.GetImageSubPath(),
			idmapped: pod.Namespaces.User != "" && len(m.GetUidMappings())+len(m.GetGidMappings()) > 0,
		})
	}
	return out, nil
}

// imageVolumeIDs are the images of vols, each once, as the container's
// record lists them: those bound from the images' shared mounts, and
// those bound from the pod's idmapped ones.
func imageVolumeIDs(vols []imageVolume) (shared, idmapped []string) {
	for _, v := range vols {
		list := &shared
		if v.idmapped {
			list = &idmapped
		}
		if !slices.Contains(*list, v.imageID) {
			*list = append(*list, v.imageID)
		}
	}
	return shared, idmapped
}

// mountImageVolumes holds and mounts the image volumes of rec's container,
// whose record lists them already, and returns the bind sources by
// container path for the spec. userNS is the pod's user namespace, for
// the mounts idmapped with it. deleteContainerRecord undoes it.
func (s *Server) mountImageVolumes(ctx context.Context, rec *meta.Container, userNS string, vols []imageVolume) (map[string]spec.ImageVolume, error) {
	if len(vols) == 0 {
		return nil, nil
	}
	mounts := map[volumeKey]string{}
	for _, k := range volumeKeys(rec) {
		p, err := s.mountImageVolume(ctx, rec.ID, k, userNS)
		if err != nil {
			return nil, err
		}
		mounts[k] = p
	}
	sources := make(map[string]spec.ImageVolume, len(vols))
	for _, v := range vols {
		k := volumeKey{imageID: v.imageID}
		if v.idmapped {
			k.pod = rec.PodID
		}
		src, err := volume.SubPath(mounts[k], v.subPath)
		if err != nil {
			return nil, fmt.Errorf("image volume %s of image %s (%s): %w", v.dst, v.ref, v.imageID, err)
		}
		sources[v.dst] = spec.ImageVolume{Source: src, IDMapped: v.idmapped}
	}
	return sources, nil
}

func (s *Server) mountImageVolume(ctx context.Context, ctrID string, k volumeKey, userNS string) (string, error) {
	unlock := s.volumeLocks.lock(k.imageID)
	defer unlock()
	// Under the lock, the hold fails if RemoveImage removed the image
	// after this container's lookup: RemoveImage checks the records under
	// the same lock, and this record was not there yet. An image mounted
	// both ways is held once: a second Use by the same holder changes
	// nothing.
	if err := s.images.Use(ctx, k.imageID, imageVolumeHolder(ctrID)); err != nil {
		return "", fmt.Errorf("image volume %s: %w", k, err)
	}
	var opts ImageVolumeOptions
	if k.pod != "" {
		opts = ImageVolumeOptions{Pod: k.pod, UserNS: userNS}
	}
	p, err := s.volumes.Mount(ctx, k.imageID, opts)
	if err != nil {
		return "", fmt.Errorf("image volume %s: %w", k, err)
	}
	return p, nil
}

// deleteContainerRecord deletes rec's record, after unmounting the image
// volume mounts that no other record lists and dropping rec's holds on
// their images; RemoveContainer ends with it, and a failed CreateContainer
// undoes its record with it. The volume locks of rec's images are held
// throughout, so that of two containers going at once, the second finds
// the first's record gone and unmounts. A failed unmount keeps the record,
// for the next RemoveContainer to try again.
func (s *Server) deleteContainerRecord(ctx context.Context, rec *meta.Container) error {
	images := volumeImages(rec)
	unlock := s.lockImageVolumes(images)
	defer unlock()
	for _, k := range volumeKeys(rec) {
		user, err := s.imageVolumeUser(k.imageID, rec.ID, k.usedBy)
		if err != nil {
			return err
		}
		if user == "" && s.volumes != nil {
			if err := s.volumes.Unmount(ctx, k.imageID, k.pod); err != nil {
				return fmt.Errorf("container %s: image volume %s: %w", rec.ID, k, err)
			}
		}
	}
	for _, imageID := range images {
		// Released whether or not the mounts stay: the other containers
		// hold the image themselves.
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

// imageVolumeUser is a container other than except whose record uses a
// mount of imageID as uses tells, "" when there is none. Must be called
// with imageID's volume lock held.
func (s *Server) imageVolumeUser(imageID, except string, uses func(*meta.Container) bool) (string, error) {
	ctrs, err := s.meta.Containers()
	if err != nil {
		return "", fmt.Errorf("containers mounting image %s: %w", imageID, err)
	}
	for _, c := range ctrs {
		if c.ID != except && uses(c) {
			return c.ID, nil
		}
	}
	return "", nil
}
