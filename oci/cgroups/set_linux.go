package cgroups

import (
	"fmt"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
)

// Set applies OCI resource limits. Fields left nil are not touched, so Set
// also serves UpdateContainerResources. Hugetlb limits are skipped when the
// hugetlb controller is not attached to the hierarchy that carries the other
// controllers (on hybrid hosts it is often only on the idle cgroup2 mount).
func (m *Manager) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	var err error
	if m.layout.Mode == Unified {
		err = m.setV2(r)
	} else {
		if len(r.Unified) > 0 {
			return errdefs.InvalidArgument("cgroup %q: unified resources need cgroup v2, host is %s", m.path, m.layout.Mode)
		}
		err = m.setV1(r)
	}
	if err != nil {
		return fmt.Errorf("cgroup %q: set resources: %w", m.path, err)
	}
	return nil
}

// writer collects the directory and layout for terse file writes.
type writer struct {
	l   *Layout
	dir string
}

func (w writer) set(file, value string) error { return w.l.write(filepath.Join(w.dir, file), value) }

func (w writer) has(file string) bool { return w.l.has(filepath.Join(w.dir, file)) }

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func utoa(v uint64) string { return strconv.FormatUint(v, 10) }

func devNum(d specs.LinuxBlockIODevice) string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }
