package image

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// FsInfo reports the bytes (allocated blocks) and inodes used by the store's
// content and layers directories, counting each hardlinked inode once. It
// walks the directories rather than using statfs, since the filesystem is
// shared with everything else under the root.
func (s *Store) FsInfo(ctx context.Context) (FsUsage, error) {
	u := FsUsage{Mountpoint: s.layersDir}
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	for _, dir := range []string{filepath.Join(s.root, "content"), s.layersDir} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while we walked
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
			k := ino{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
			u.InodesUsed++
			u.UsedBytes += uint64(st.Blocks) * 512
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return FsUsage{}, err
		}
	}
	return u, nil
}
