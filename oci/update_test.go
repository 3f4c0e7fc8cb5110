package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// recordingCgroup is a CgroupManager that keeps what Set was given.
type recordingCgroup struct {
	set []*specs.LinuxResources
	err error
}

func (c *recordingCgroup) Apply(int) error { return nil }
func (c *recordingCgroup) Set(r *specs.LinuxResources) error {
	c.set = append(c.set, r)
	return c.err
}
func (c *recordingCgroup) Pids() ([]int, error)                       { return nil, nil }
func (c *recordingCgroup) KillAll(context.Context, unix.Signal) error { return nil }
func (c *recordingCgroup) Destroy(context.Context) error              { return nil }

func TestUpdate(t *testing.T) {
	root := t.TempDir()
	cg := &recordingCgroup{}
	var opened []string
	gone := false
	e := &Executor{StateDir: root, NewCgroup: func(path string, res *specs.LinuxResources) (CgroupManager, error) {
		if res != nil {
			t.Errorf("Update created the cgroup %s instead of opening it", path)
		}
		opened = append(opened, path)
		if gone {
			return nil, errdefs.NotFound("cgroup %s", path)
		}
		return cg, nil
	}}
	for _, st := range []*State{
		{State: specs.State{ID: "c1"}, CgroupsPath: "/kubepods/p/c1"},
		{State: specs.State{ID: "nocg"}},
	} {
		dir := filepath.Join(root, st.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := writeState(dir, st); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	limit := int64(64 << 20)
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	if err := e.Update(ctx, "c1", res); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if len(opened) != 1 || opened[0] != "/kubepods/p/c1" || len(cg.set) != 1 || cg.set[0] != res {
		t.Fatalf("opened %q, set %v: want the state's cgroup given the resources once", opened, cg.set)
	}
	cg.err = errors.New("write memory.limit_in_bytes: device or resource busy")
	if err := e.Update(ctx, "c1", res); !errors.Is(err, cg.err) {
		t.Errorf("a failing cgroup write gave %v", err)
	}
	gone = true
	if err := e.Update(ctx, "c1", res); !errdefs.IsNotFound(err) {
		t.Errorf("cgroup gone: %v, want NotFound", err)
	}
	if err := e.Update(ctx, "nocg", res); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("container without a cgroup: %v, want FailedPrecondition", err)
	}
	if err := e.Update(ctx, "missing", res); !errdefs.IsNotFound(err) {
		t.Errorf("unknown container: %v, want NotFound", err)
	}
	if err := e.Update(ctx, "c1", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no resources: %v, want InvalidArgument", err)
	}
}

// usingCgroup is a recordingCgroup whose processes hold ws bytes.
type usingCgroup struct {
	recordingCgroup
	ws uint64
}

func (c *usingCgroup) WorkingSet() (uint64, error) { return c.ws, nil }

// TestUpdateMemoryDecrease: a memory limit below the working set is refused
// before anything is written; at or above it, or without a limit, it goes
// through.
func TestUpdateMemoryDecrease(t *testing.T) {
	root := t.TempDir()
	cg := &usingCgroup{ws: 100 << 20}
	e := &Executor{StateDir: root, NewCgroup: func(string, *specs.LinuxResources) (CgroupManager, error) { return cg, nil }}
	dir := filepath.Join(root, "c1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeState(dir, &State{State: specs.State{ID: "c1"}, CgroupsPath: "/kubepods/p/c1"}); err != nil {
		t.Fatal(err)
	}
	mem := func(n int64) *specs.LinuxResources {
		return &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &n}}
	}
	shares := uint64(512)
	for _, tc := range []struct {
		name string
		res  *specs.LinuxResources
		want error
	}{
		{"below the working set", mem(64 << 20), errdefs.ErrFailedPrecondition},
		{"at the working set", mem(100 << 20), nil},
		{"above", mem(200 << 20), nil},
		{"unlimited", mem(-1), nil},
		{"no memory change", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(cg.set)
			err := e.Update(context.Background(), "c1", tc.res)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if wrote := len(cg.set) > before; wrote != (tc.want == nil) {
				t.Fatalf("wrote the cgroup: %v, want %v", wrote, tc.want == nil)
			}
		})
	}
}
