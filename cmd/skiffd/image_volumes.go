package main

import (
	"context"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/image/volume"
)

// imageVolumeManager adapts the image volume manager to what the CRI layer
// asks of image volume mounts.
type imageVolumeManager struct{ m *volume.Manager }

func (v imageVolumeManager) Mount(ctx context.Context, imageID string, opts cri.ImageVolumeOptions) (string, error) {
	return v.m.Mount(ctx, imageID, volume.MountOptions{Pod: opts.Pod, UserNS: opts.UserNS})
}

func (v imageVolumeManager) Unmount(ctx context.Context, imageID, pod string) error {
	return v.m.Unmount(ctx, imageID, pod)
}
