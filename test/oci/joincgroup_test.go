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

// countingCgroup is the real cgroup Manager, counting how the executor
// moves processes into it; with target set, its clone target is that
// directory instead of the cgroup's, which the kernel refuses to clone
// into.
type countingCgroup struct {
	*cgroups.Manager
	target string
	n      *joinCounts
}

type joinCounts struct{ apply, applyV1, applyUnified atomic.Int32 }

func (c *countingCgroup) Apply(pid int) error {
	c.n.apply.Add(1)
	return c.Manager.Apply(pid)
}

func (c *countingCgroup) ApplyV1(pid int) error {
	c.n.applyV1.Add(1)
	return c.Manager.ApplyV1(pid)
}

func (c *countingCgroup) ApplyUnified(pid int) error {
	c.n.applyUnified.Add(1)
	return c.Manager.ApplyUnified(pid)
}

func (c *countingCgroup) OpenCloneTarget() (*os.File, error) {
	if c.target != "" {
		return os.Open(c.target)
	}
	return c.Manager.OpenCloneTarget()
}

// plainCgroup hides the Manager's ways to be joined in parts.
type plainCgroup struct {
	oci.CgroupManager
	n *joinCounts
}

func (c plainCgroup) Apply(pid int) error {
	c.n.apply.Add(1)
	return c.CgroupManager.Apply(pid)
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

// TestJoinCgroupInParts: a container's init and an exec'd process join the
// container's cgroup without a cgroup.procs write of the parent: cloned
// straight into its cgroup2 directory (clone3 with CLONE_INTO_CGROUP), and
// moving their own thread into the v1 hierarchies of this hybrid host.
// When the kernel refuses the clone, the parent writes the cgroup2
// directory's cgroup.procs; a cgroup manager that cannot be joined in parts
// gets every hierarchy written by the parent, as before. Each way ends with
// the process in the cgroup in every hierarchy.
func TestJoinCgroupInParts(t *testing.T) {
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
		plain  bool
		// wanted joins by the parent (init and exec'd process) and
		// refused clones
		apply, applyV1, applyUnified, refused int32
	}{
		{name: "parts"},
		{name: "refused", target: t.TempDir(), applyUnified: 2, refused: 2},
		{name: "plain", plain: true, apply: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &joinCounts{}
			logs := &syncBuffer{}
			e := newExecutor(t)
			e.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cgroupfs := oci.NewCgroupfs()
			e.NewCgroup = func(path string, res *specs.LinuxResources) (oci.CgroupManager, error) {
				m, err := cgroupfs(path, res)
				if err != nil {
					return nil, err
				}
				if tc.plain {
					return plainCgroup{CgroupManager: m, n: n}, nil
				}
				return &countingCgroup{Manager: m.(*cgroups.Manager), target: tc.target, n: n}, nil
			}
			id := "joincg-" + tc.name
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

			got := [4]int32{n.apply.Load(), n.applyV1.Load(), n.applyUnified.Load(), int32(strings.Count(logs.String(), "clone into cgroup refused"))}
			if want := [4]int32{tc.apply, tc.applyV1, tc.applyUnified, tc.refused}; got != want {
				t.Errorf("Apply, ApplyV1, ApplyUnified calls and refused clones: %v, want %v (log: %s)", got, want, logs)
			}
		})
	}
}
