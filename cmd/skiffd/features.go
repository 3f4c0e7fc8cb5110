package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/image/rootfs"
	"github.com/skiffcri/skiff/sandbox"
	"github.com/skiffcri/skiff/shim"
)

// probeFeatures finds what this node can give pods, once, at start-up.
// Each missing feature is logged with its reason.
func probeFeatures(ctx context.Context, log *slog.Logger, shimBin, runtimeRoot, stateDir string, idmapDirs []string) cri.Features {
	var f cri.Features
	// mount_setattr(2) (Linux 5.12) does recursive read-only mounts.
	f.RecursiveReadOnlyMounts = !errors.Is(unix.MountSetattr(-1, "", 0, &unix.MountAttr{}), unix.ENOSYS)
	if err := probeUserNamespaces(ctx, shimBin, runtimeRoot, stateDir, idmapDirs); err != nil {
		log.Warn("pods cannot have user namespaces", "err", err)
	} else {
		f.UserNamespaces = true
	}
	log.Info("runtime features", "recursiveReadOnlyMounts", f.RecursiveReadOnlyMounts, "userNamespaces", f.UserNamespaces)
	return f
}

// probeUserNamespaces checks what a pod with a user namespace needs: the
// executor's pre-runtime stage (skiff-nsenter beside the shim), a kernel
// that creates user namespaces, and filesystems under idmapDirs (layers,
// writable layers) that can be idmapped with one.
func probeUserNamespaces(ctx context.Context, shimBin, runtimeRoot, stateDir string, idmapDirs []string) error {
	feats, err := shim.RuntimeCLI{Binary: shimBin, Root: runtimeRoot}.Features(ctx)
	if err != nil {
		return err
	}
	if feats.Linux == nil || !slices.Contains(feats.Linux.Namespaces, "user") {
		return fmt.Errorf("%s cannot join user namespaces (is skiff-nsenter installed beside it?)", shimBin)
	}
	// A throw-away user namespace: any range will do, nothing runs in it.
	probeMap := []sandbox.IDMap{{ContainerID: 0, HostID: 1 << 30, Size: 65536}}
	dir, err := os.MkdirTemp(stateDir, "userns-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := sandbox.CreateUserNamespaces(ctx, filepath.Join(dir, "ns"), 0, "", sandbox.UserNS{UIDs: probeMap, GIDs: probeMap}, shimBin)
	if err != nil {
		return fmt.Errorf("create a user namespace: %w", err)
	}
	defer sandbox.RemoveNamespaces(filepath.Join(dir, "ns"))
	for _, d := range idmapDirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := rootfs.SupportsIDMap(d, ns.User); err != nil {
			return err
		}
	}
	return nil
}
