package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/config"
	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/image/rootfs"
	"github.com/skiffcri/skiff/sandbox"
	"github.com/skiffcri/skiff/shim"
	"github.com/skiffcri/skiff/shim/crishim"
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

// runtimeHandlers resolves the configured runtime handlers: a builtin one
// has the executor's features (def); an OCI runtime's executable is found
// (the handler's name on $PATH when no path is set) and its features probed
// with its "features" command. It also returns the OCI runtimes for the
// shims.
func runtimeHandlers(ctx context.Context, log *slog.Logger, cfg config.Config, def cri.Features) ([]cri.RuntimeHandler, map[string]crishim.OCIRuntime, error) {
	var handlers []cri.RuntimeHandler
	runtimes := map[string]crishim.OCIRuntime{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Runtimes)) {
		rc := cfg.Runtimes[name]
		if rc.Type != config.RuntimeOCI {
			handlers = append(handlers, cri.RuntimeHandler{Name: name, Features: def})
			continue
		}
		bin := rc.Path
		if bin == "" {
			p, err := exec.LookPath(name)
			if err != nil {
				return nil, nil, fmt.Errorf("runtime handler %q: no path configured and %q is not on $PATH: %w", name, name, err)
			}
			if bin, err = filepath.Abs(p); err != nil {
				return nil, nil, fmt.Errorf("runtime handler %q: %w", name, err)
			}
		}
		if fi, err := os.Stat(bin); err != nil {
			return nil, nil, fmt.Errorf("runtime handler %q: %w", name, err)
		} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, nil, fmt.Errorf("runtime handler %q: %s is not an executable", name, bin)
		}
		rt := crishim.OCIRuntime{Binary: bin, Root: cfg.RuntimeRoot(name)}
		runtimes[name] = rt
		feats, err := shim.RuntimeCLI{Binary: rt.Binary, Root: rt.Root, OCI: true}.Features(ctx)
		if err != nil {
			// Older runtimes have no "features": claim nothing optional.
			log.Warn("runtime handler features unknown; reporting none", "handler", name, "runtime", bin, "err", err)
		}
		f := ociFeatures(feats, def)
		log.Info("runtime handler", "handler", name, "runtime", bin, "root", rt.Root,
			"recursiveReadOnlyMounts", f.RecursiveReadOnlyMounts, "userNamespaces", f.UserNamespaces)
		handlers = append(handlers, cri.RuntimeHandler{Name: name, Features: f})
	}
	return handlers, runtimes, nil
}

// ociFeatures is what pods get from an OCI runtime with features document
// feats on this node (kernel, filesystems: the executor's probe, def).
// Recursive read-only mounts need the runtime's "rro" mount option;
// pods with a user namespace need it to create user namespaces and to
// idmap mounts (the pod's volumes and image volumes arrive as bind mounts
// with mappings, which only an idmap-capable runtime honours).
func ociFeatures(feats features.Features, def cri.Features) cri.Features {
	var f cri.Features
	f.RecursiveReadOnlyMounts = def.RecursiveReadOnlyMounts && slices.Contains(feats.MountOptions, "rro")
	idmap := feats.Linux != nil && feats.Linux.MountExtensions != nil && feats.Linux.MountExtensions.IDMap != nil &&
		feats.Linux.MountExtensions.IDMap.Enabled != nil && *feats.Linux.MountExtensions.IDMap.Enabled
	f.UserNamespaces = def.UserNamespaces && idmap && feats.Linux != nil && slices.Contains(feats.Linux.Namespaces, "user")
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
