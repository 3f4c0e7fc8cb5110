package image

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// usage is the allocated bytes and inode count of one tree.
type usage struct{ bytes, inodes uint64 }

// FsInfo reports the bytes (allocated blocks) and inodes used by the store's
// content and layers directories. It walks the directories rather than using
// statfs, since the filesystem is shared with everything else under the root.
// A committed layer never changes, so each layer is walked once and its usage
// cached until the layer is freed; the kubelet asks every few seconds.
func (s *Store) FsInfo(ctx context.Context) (FsUsage, error) {
	out := FsUsage{Mountpoint: s.layersDir}
	add := func(u usage) { out.UsedBytes += u.bytes; out.InodesUsed += u.inodes }

	for _, dir := range []string{filepath.Join(s.root, "content"), filepath.Join(s.root, "content", "blobs"), s.contentDir} {
		u, err := statUsage(dir)
		if err != nil {
			return FsUsage{}, err
		}
		add(u)
	}
	blobs, err := os.ReadDir(s.contentDir)
	if err != nil {
		return FsUsage{}, err
	}
	for _, b := range blobs {
		u, err := statUsage(filepath.Join(s.contentDir, b.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // freed while we looked
		}
		if err != nil {
			return FsUsage{}, err
		}
		add(u)
	}

	u, err := statUsage(s.layersDir)
	if err != nil {
		return FsUsage{}, err
	}
	add(u)
	layers, err := os.ReadDir(s.layersDir)
	if err != nil {
		return FsUsage{}, err
	}
	live := map[string]bool{}
	for _, l := range layers {
		live[l.Name()] = true
		s.usageMu.Lock()
		u, ok := s.usage[l.Name()]
		s.usageMu.Unlock()
		if !ok {
			u, err = walkUsage(ctx, filepath.Join(s.layersDir, l.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return FsUsage{}, err
			}
			if s.layerCommitted(l.Name()) {
				s.usageMu.Lock()
				s.usage[l.Name()] = u
				s.usageMu.Unlock()
			}
		}
		add(u)
	}
	s.usageMu.Lock()
	for k := range s.usage {
		if !live[k] {
			delete(s.usage, k)
		}
	}
	s.usageMu.Unlock()
	return out, nil
}

func statUsage(p string) (usage, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return usage{}, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return usage{bytes: uint64(st.Blocks) * 512, inodes: 1}, nil
}

// walkUsage sums a tree, counting each hardlinked inode once.
func walkUsage(ctx context.Context, dir string) (usage, error) {
	var u usage
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		u.inodes++
		u.bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u, err
}
