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
