package cgroups

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// simFS simulates cgroupfs over plain directories for unit tests, with the
// kernel behaviour the Manager relies on:
//   - every interface file of a cgroup exists (a write creates the plain
//     file holding the value), except the optional ones a kernel may lack,
//     which this simulated kernel lacks: hugetlb reservation limits
//     (*.rsvd.*) and the BFQ weight (io.bfq.weight);
//   - writing "+ctrl" to cgroup.subtree_control adds to what it holds;
//   - a v2 cgroup offers (cgroup.controllers) what its parent enabled;
//   - a new v1 cpuset cgroup has empty cpuset.cpus and cpuset.mems;
//   - removing a cgroup takes its interface files with it.
//
// It records the device programs attached to each cgroup.
type simFS struct {
	mu      sync.Mutex
	devices map[string][]byte
}

func (s *simFS) readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && filepath.Base(path) == "cgroup.controllers" && s.exists(path) {
		// Below the root (whose file the test wrote): what the parent
		// enabled.
		b, _ = os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(path)), "cgroup.subtree_control"))
		return string(b), nil
	}
	return string(b), err
}

func (s *simFS) writeFile(path, value string) error {
	if !s.exists(path) {
		return &os.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	if filepath.Base(path) == "cgroup.subtree_control" {
		old, _ := os.ReadFile(path)
		on := strings.Fields(string(old))
		for _, w := range strings.Fields(value) {
			switch {
			case strings.HasPrefix(w, "+") && !slices.Contains(on, w[1:]):
				on = append(on, w[1:])
			case strings.HasPrefix(w, "-"):
				on = slices.DeleteFunc(on, func(c string) bool { return c == w[1:] })
			}
		}
		value = strings.Join(on, " ")
	}
	return os.WriteFile(path, []byte(value), 0o644)
}

func (s *simFS) exists(path string) bool {
	if _, err := os.Stat(path); err == nil {
		return true
	}
	base := filepath.Base(path)
	if strings.Contains(base, ".rsvd.") || base == "io.bfq.weight" {
		return false
	}
	// Interface files of an existing cgroup exist.
	_, err := os.Stat(filepath.Dir(path))
	return err == nil && (strings.Contains(base, ".") || base == "tasks")
}

func (s *simFS) openWrite(path string) (*os.File, error) {
	if !s.exists(path) {
		return nil, &os.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
}

func (s *simFS) mkdir(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "cpuset.cpus")); err == nil {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if err := os.WriteFile(filepath.Join(path, f), nil, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *simFS) rmdir(path string) error { return os.RemoveAll(path) }

func (s *simFS) removeTree(_ context.Context, dir string) error {
	err := os.RemoveAll(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *simFS) attachDevices(dir string, prog []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.devices == nil {
		s.devices = map[string][]byte{}
	}
	s.devices[dir] = prog
	return nil
}
