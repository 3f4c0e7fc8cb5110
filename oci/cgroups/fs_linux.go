package cgroups

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// kernelFS is the kernel's cgroupfs.
type kernelFS struct{}

func (kernelFS) readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (kernelFS) writeFile(path, value string) error {
	// Real cgroupfs files are never created.
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(value))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return &os.PathError{Op: "write " + strconv.Quote(value), Path: path, Err: err}
	}
	return nil
}

func (kernelFS) exists(path string) bool { return exists(path) }

func (kernelFS) openWrite(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
}

func (kernelFS) mkdir(path string) error {
	if err := unix.Mkdir(path, 0o755); err != nil {
		return &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return nil
}

func (kernelFS) rmdir(path string) error {
	if err := unix.Rmdir(path); err != nil {
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

func (kernelFS) removeTree(ctx context.Context, root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// WalkDir visits parents before children: remove in reverse.
	for _, d := range slices.Backward(dirs) {
		if err := rmdirRetry(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (kernelFS) attachDevices(dir string, prog []byte) error { return attachDeviceProgram(dir, prog) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
