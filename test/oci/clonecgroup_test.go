package oci_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// countingCgroup is the real cgroup Manager, counting how processes join
// it; with target set, its clone target is that directory instead of the
// cgroup's, which the kernel refuses to clone into.
type countingCgroup struct {
	*cgroups.Manager
	target                 string
	applied, appliedCloned *atomic.Int32
}

func (c *countingCgroup) Apply(pid int) error {
	c.applied.Add(1)
	return c.Manager.Apply(pid)
}

func (c *countingCgroup) ApplyCloned(pid int) error {
	c.appliedCloned.Add(1)
	return c.Manager.ApplyCloned(pid)
}

func (c *countingCgroup) OpenCloneTarget() (*os.File, error) {
	if c.target != "" {
		return os.Open(c.target)
	}
	return c.Manager.OpenCloneTarget()
}

// syncBuffer is a log sink safe for the executor's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inCgroup fails t unless process pid is in cgroup path in every
// hierarchy with controllers and in the cgroup2 one.
func inCgroup(t *testing.T, pid int, path string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	must(t, err)
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || strings.HasPrefix(f[1], "name=") {
			continue
		}
		if f[2] != path {
			t.Errorf("pid %d: hierarchy %q: in %s, want %s", pid, f[0]+":"+f[1], f[2], path)
		}
	}
}

// TestCloneIntoCgroup: a container's init and an exec'd process are cloned
// straight into the container's cgroup2 directory (clone3 with
// CLONE_INTO_CGROUP; on this hybrid host the v1 hierarchies are still
// joined by a cgroup.procs write), and when the kernel refuses the clone
// they are started outside it and moved in, as before.
func TestCloneIntoCgroup(t *testing.T) {
	needRoot(t)
	l, err := cgroups.DetectLayout()
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	if l.Unified == "" {
		t.Skip("no cgroup2 hierarchy to clone into")
	}
	for _, tc := range []struct {
		name   string
		target string // a directory the kernel refuses to clone into
	}{
		{name: "cloned"},
		{name: "refused", target: t.TempDir()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var applied, appliedCloned atomic.Int32
			logs := &syncBuffer{}
			e := newExecutor(t)
			e.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			e.NewCgroup = func(path string, res *specs.LinuxResources) (oci.CgroupManager, error) {
				m, err := oci.Cgroupfs(path, res)
				if err != nil {
					return nil, err
				}
				return &countingCgroup{Manager: m.(*cgroups.Manager), target: tc.target, applied: &applied, appliedCloned: &appliedCloned}, nil
			}
			id := "clonecg-" + tc.name
			spec := sh(`exec sleep 1000`)
			spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-" + id
			c := startSleeper(t, e, id, spec)
			inCgroup(t, c.Pid, spec.Linux.CgroupsPath)

			proc, err := e.Exec(testCtx(t), id, &specs.Process{Args: []string{"sleep", "1000"}, Env: []string{"PATH=/bin"}, Cwd: "/"}, oci.IO{})
			must(t, err)
			inCgroup(t, proc.Pid, spec.Linux.CgroupsPath)
			must(t, e.Kill(testCtx(t), id, 9, true))
			if _, err := proc.Wait(); err != nil {
				t.Error(err)
			}

			refusals := strings.Count(logs.String(), "clone into cgroup refused")
			if tc.target == "" {
				if refusals != 0 || applied.Load() != 0 || appliedCloned.Load() != 2 {
					t.Errorf("%d refused clones, %d moves, %d clones; want 0, 0, 2 (log: %s)", refusals, applied.Load(), appliedCloned.Load(), logs)
				}
			} else if refusals != 2 || applied.Load() != 2 || appliedCloned.Load() != 0 {
				t.Errorf("%d refused clones, %d moves, %d clones; want 2, 2, 0 (log: %s)", refusals, applied.Load(), appliedCloned.Load(), logs)
			}
		})
	}
}
