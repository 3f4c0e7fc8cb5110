package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiffcri/skiff/internal/statedir"
)

type dirs []string

func (d dirs) LayerDirs(context.Context, string) ([]string, error) { return d, nil }

func TestMountUnmount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for overlay mounts")
	}
	tmp := t.TempDir()
	top, bottom := filepath.Join(tmp, "top"), filepath.Join(tmp, "bottom")
	for _, d := range []string{top, bottom} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(bottom, "f"), []byte("bottom"), 0o644)
	os.WriteFile(filepath.Join(top, "f"), []byte("top"), 0o644)
	os.WriteFile(filepath.Join(bottom, "g"), []byte("g"), 0o644)
	m := &Manager{RootDir: filepath.Join(tmp, "root"), Containers: statedir.Containers{Root: filepath.Join(tmp, "state")}, Layers: dirs{top, bottom}}
	ctx := context.Background()
	p, err := m.Mount(ctx, "c1", "img", MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unmount(ctx, "c1") })
	if b, _ := os.ReadFile(filepath.Join(p, "f")); string(b) != "top" {
		t.Fatalf("f = %q, want the top layer's", b)
	}
	if err := os.WriteFile(filepath.Join(p, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.RootDir, "c1", "upper", "new")); err != nil {
		t.Fatalf("write did not land in the upper dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bottom, "new")); err == nil {
		t.Fatal("write reached a lower layer")
	}
	if p2, err := m.Mount(ctx, "c1", "img", MountOptions{}); err != nil || p2 != p {
		t.Fatalf("second mount = %q, %v", p2, err)
	}
	// Detach, twice: unmounted, the writable layer kept.
	for range 2 {
		if err := m.Detach(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	if mounted(p) {
		t.Fatal("still mounted after Detach")
	}
	if _, err := os.Stat(filepath.Join(m.RootDir, "c1", "upper", "new")); err != nil {
		t.Fatalf("Detach lost the writable layer: %v", err)
	}
	if err := m.Unmount(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if mounted(p) {
		t.Fatal("still mounted")
	}
	if _, err := os.Stat(filepath.Join(m.RootDir, "c1")); !os.IsNotExist(err) {
		t.Fatalf("writable layer left: %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("mount point left: %v", err)
	}
	if err := m.Unmount(ctx, "c1"); err != nil {
		t.Fatalf("second unmount: %v", err)
	}
}

func TestMountFailureLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	m := &Manager{RootDir: filepath.Join(tmp, "root"), Containers: statedir.Containers{Root: filepath.Join(tmp, "state")}, Layers: dirs{filepath.Join(tmp, "a:b")}}
	ctx := context.Background()
	if _, err := m.Mount(ctx, "c1", "img", MountOptions{}); err == nil {
		t.Fatal("mount of a layer path with an overlay separator succeeded")
	}
	for _, d := range []string{m.path("c1"), filepath.Join(m.RootDir, "c1")} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s left by a failed mount: %v", d, err)
		}
	}
	// A writable layer that was there before keeps its data.
	keep := filepath.Join(m.RootDir, "c2", "upper", "keep")
	if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Mount(ctx, "c2", "img", MountOptions{}); err == nil {
		t.Fatal("mount succeeded")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("a failed mount removed an existing writable layer: %v", err)
	}
}
