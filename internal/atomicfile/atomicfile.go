// Package atomicfile writes files that readers see whole or not at all and
// that survive a crash once written: every record Skiff calls durable (exit
// records, executor state, CNI attachment records) goes through Write.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, mode perm. The data goes to a temporary
// file in the same directory, is fsynced, and is renamed over path; then the
// directory is fsynced so the rename itself is on disk. On failure path is
// unchanged and no temporary file is left behind.
func Write(path string, data []byte, perm os.FileMode) (retErr error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if retErr != nil {
			_ = os.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
