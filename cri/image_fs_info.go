package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports the bytes and inodes that image content and layers
// use (image_filesystems) and those of containers' writable layers
// (container_filesystems). The kubelet's eviction manager reads the first
// entry of each; it gets capacity and free space itself from the
// filesystem holding each mountpoint.
func (s *Server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.images.FsInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("image fs info: %w", err)
	}
	now := time.Now().UnixNano()
	resp := &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}}}
	if s.rootfsRoot != "" {
		used, inodes, err := s.layers.get(ctx, s.lifetime(), s.rootfsRoot)
		if err != nil {
			return nil, fmt.Errorf("container fs info of %s: %w", s.rootfsRoot, err)
		}
		resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{{
			Timestamp:  now,
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.rootfsRoot},
			UsedBytes:  &runtimeapi.UInt64Value{Value: used},
			InodesUsed: &runtimeapi.UInt64Value{Value: inodes},
		}}
	}
	return resp, nil
}

// treeUsage sums the allocated bytes and the inodes below dir, counting a
// hardlinked inode once and staying on dir's filesystem, as du -x does. A
// dir that does not exist (yet) uses nothing; entries removed while it
// walks are skipped.
func treeUsage(ctx context.Context, dir string) (bytes, inodes uint64, err error) {
	var root syscall.Stat_t
	if err := syscall.Lstat(dir, &root); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, nil
		}
		return 0, 0, &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		bytes += uint64(st.Blocks) * 512
		inodes++
		return nil
	})
	return bytes, inodes, err
}
