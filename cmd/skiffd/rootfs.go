package main

import (
	"context"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/image/rootfs"
)

// rootfsManager adapts the rootfs manager to what the CRI layer asks of
// containers' root filesystems.
type rootfsManager struct{ m *rootfs.Manager }

func (r rootfsManager) Mount(ctx context.Context, id, imageID string, opts cri.RootfsOptions) (string, error) {
	return r.m.Mount(ctx, id, imageID, rootfs.MountOptions{UserNS: opts.UserNS})
}

func (r rootfsManager) Unmount(ctx context.Context, id string) error { return r.m.Unmount(ctx, id) }

func (r rootfsManager) Detach(ctx context.Context, id string) error { return r.m.Detach(ctx, id) }
