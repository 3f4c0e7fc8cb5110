package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/statedir"
)

const (
	imageID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	podID   = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

// tree writes files (name → content; a content starting with "->" makes a
// symlink to the rest) below dir.
func tree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSubPath(t *testing.T) {
	outside := t.TempDir()
	mount := filepath.Join(t.TempDir(), "image")
	tree(t, mount, map[string]string{
		"data/a.txt":       "a",
		"data/sub/b.txt":   "b",
		"inside":           "->data/sub",
		"data/up":          "->../data",
		"absolute":         "->/data",
		"climbing":         "->../../../../..",
		"data/climb-in":    "->../../image/data", // leaves the image, comes back by name
		"escape-to-host":   "->" + outside,
		"dangling":         "->data/none",
		"data/sub/loop":    "->loop",
		"data/sub/.hidden": "h",
	})
	resolved, err := filepath.EvalSymlinks(mount)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sub  string
		want string // relative to the mount; "" means refused
	}{
		{"", "."},
		{".", "."},
		{"data", "data"},
		{"data/sub/b.txt", "data/sub/b.txt"},
		{"data/sub/.hidden", "data/sub/.hidden"},
		{"inside", "data/sub"},
		{"inside/b.txt", "data/sub/b.txt"},
		{"data/up/sub", "data/sub"},
		{"/data", ""},
		{"../image/data", ""},
		{"..", ""},
		{"data/../data", ""},
		{"data/", ""},
		{"./data", ""},
		{"missing", ""},
		{"data/missing", ""},
		{"dangling", ""},
		{"absolute", ""},
		{"climbing", ""},
		{"data/climb-in", ""},
		{"escape-to-host", ""},
		{"data/sub/loop", ""},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			got, err := SubPath(mount, tc.sub)
			if tc.want == "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("SubPath(%q) = %q, %v; want an invalid argument", tc.sub, got, err)
				}
				if !strings.Contains(err.Error(), tc.sub) {
					t.Errorf("error %q does not name the sub path %q", err, tc.sub)
				}
				return
			}
			if err != nil {
				t.Fatalf("SubPath(%q): %v", tc.sub, err)
			}
			want := filepath.Join(resolved, tc.want)
			if tc.sub == "" {
				want = mount
			}
			if got != want {
				t.Fatalf("SubPath(%q) = %q, want %q", tc.sub, got, want)
			}
		})
	}
}

// TestSubPathThroughHostSymlink: a mount point reached through a host
// symlink (a state dir under /var/run) is not an escape.
func TestSubPathThroughHostSymlink(t *testing.T) {
	real := t.TempDir()
	tree(t, real, map[string]string{"image/data/a.txt": "a", "image/link": "->data"})
	link := filepath.Join(t.TempDir(), "run")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	resolved, _ := filepath.EvalSymlinks(real)
	for sub, want := range map[string]string{"data/a.txt": "image/data/a.txt", "link": "image/data"} {
		got, err := SubPath(filepath.Join(link, "image"), sub)
		if err != nil || got != filepath.Join(resolved, want) {
			t.Errorf("SubPath(%q) = %q, %v; want %q", sub, got, err, filepath.Join(resolved, want))
		}
	}
}

func TestMountRefusesPartialIDs(t *testing.T) {
	m := &Manager{Mounts: statedir.ImageVolumes{Root: t.TempDir()}, Layers: layers{}}
	for _, id := range []string{"", "sha256:", "0123456789ab", "sha256:0123", strings.TrimPrefix(imageID, "sha256:"),
		"sha256:../../../../../../../../../../../../../../../../../../../../../../etc",
		"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"} {
		if _, err := m.Mount(context.Background(), id, MountOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Mount(%q) = %v, want an invalid argument", id, err)
		}
		if err := m.Unmount(context.Background(), id, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Unmount(%q) = %v, want an invalid argument", id, err)
		}
	}
}

// TestMountRefusesBadPods: a pod's mount needs a pod ID (it becomes a
// path element) and the pod's user namespace, together.
func TestMountRefusesBadPods(t *testing.T) {
	m := &Manager{Mounts: statedir.ImageVolumes{Root: t.TempDir()}, Layers: layers{}}
	for _, opts := range []MountOptions{
		{Pod: podID},
		{UserNS: "/proc/self/ns/user"},
		{Pod: "p1", UserNS: "/proc/self/ns/user"},
		{Pod: "../" + podID[3:], UserNS: "/proc/self/ns/user"},
		{Pod: strings.ToUpper(podID), UserNS: "/proc/self/ns/user"},
	} {
		if _, err := m.Mount(context.Background(), imageID, opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Mount(%+v) = %v, want an invalid argument", opts, err)
		}
		if opts.Pod != "" && opts.Pod != podID {
			if err := m.Unmount(context.Background(), imageID, opts.Pod); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("Unmount(%q) = %v, want an invalid argument", opts.Pod, err)
			}
		}
	}
	if ents, _ := os.ReadDir(m.Mounts.Root); len(ents) != 0 {
		t.Errorf("refused mounts left %v", ents)
	}
}

// layers answers every image with the same directories.
type layers []string

func (l layers) LayerDirs(context.Context, string) ([]string, error) { return l, nil }

// mountsAt counts the mounts whose mount point is p.
func mountsAt(t *testing.T, p string) int {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

// TestMount mounts images of no, one and three layers: the layers' merged
// content shows, read-only, once however often Mount is called; Unmount
// removes the mount and its mount point; a mount point whose mount went
// (a reboot cleared nothing but the mount) is mounted again.
func TestMount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for mounts")
	}
	tmp := t.TempDir()
	top, mid, bottom := filepath.Join(tmp, "top"), filepath.Join(tmp, "mid"), filepath.Join(tmp, "bottom")
	tree(t, bottom, map[string]string{"f": "bottom", "g": "g", "dir/x": "x"})
	tree(t, mid, map[string]string{"f": "mid"})
	tree(t, top, map[string]string{"f": "top", "dir/y": "y"})
	for _, tc := range []struct {
		name   string
		layers layers
		want   map[string]string
	}{
		{"no layers", layers{}, map[string]string{}},
		{"one layer", layers{bottom}, map[string]string{"f": "bottom", "g": "g", "dir/x": "x"}},
		{"three layers", layers{top, mid, bottom}, map[string]string{"f": "top", "g": "g", "dir/x": "x", "dir/y": "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := &Manager{Mounts: statedir.ImageVolumesUnder(filepath.Join(t.TempDir(), "state")), Layers: tc.layers}
			p, err := m.Mount(ctx, imageID, MountOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Unmount(ctx, imageID, "") })
			if want := filepath.Join(m.Mounts.Root, strings.TrimPrefix(imageID, "sha256:")); p != want {
				t.Errorf("mount point %s, want %s", p, want)
			}
			for name, content := range tc.want {
				if b, err := os.ReadFile(filepath.Join(p, name)); err != nil || string(b) != content {
					t.Errorf("%s = %q, %v; want %q", name, b, err, content)
				}
			}
			if ents, _ := os.ReadDir(p); len(tc.want) == 0 && len(ents) != 0 {
				t.Errorf("an image without layers shows %v", ents)
			}
			if err := os.WriteFile(filepath.Join(p, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write into the mount: %v, want EROFS", err)
			}
			if p2, err := m.Mount(ctx, imageID, MountOptions{}); err != nil || p2 != p {
				t.Fatalf("second Mount = %q, %v", p2, err)
			}
			if n := mountsAt(t, p); n != 1 {
				t.Fatalf("%d mounts at %s after two Mounts, want 1", n, p)
			}
			// What a reboot leaves: the mount gone, the record that
			// wants it still there (here the mount point too).
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Mount(ctx, imageID, MountOptions{}); err != nil {
				t.Fatalf("Mount after the mount went: %v", err)
			}
			if n := mountsAt(t, p); n != 1 {
				t.Fatalf("%d mounts at %s after mounting again, want 1", n, p)
			}
			for i := range 2 {
				if err := m.Unmount(ctx, imageID, ""); err != nil {
					t.Fatalf("Unmount #%d: %v", i+1, err)
				}
			}
			if n := mountsAt(t, p); n != 0 {
				t.Errorf("%d mounts left at %s", n, p)
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mount point left: %v", err)
			}
			for _, l := range tc.layers {
				if _, err := os.Stat(filepath.Join(l, "new")); err == nil {
					t.Errorf("a write reached layer %s", l)
				}
			}
		})
	}
}

// nsRoot is the host id that the test's user namespace maps 0 to.
const nsRoot = 100000

// newUserNS returns the user namespace file of a process that maps 0-65535
// to host nsRoot-(nsRoot+65535); the process is killed at the end of t.
func newUserNS(t *testing.T) string {
	t.Helper()
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: nsRoot, Size: 65536}}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: idmap, GidMappings: idmap}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new user namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

// TestMountPod mounts images of no, one and three layers for a pod with a
// user namespace: the pod's mount is apart from the image's plain one, the
// layers' root-owned files show owned by the namespace's root through it
// (and by root through the plain mount), the merged content is the same,
// nothing can be written, Mount is idempotent and mounts again a mount
// that went, and Unmount of the pod's mount leaves the plain one.
func TestMountPod(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for idmapped mounts")
	}
	tmp := t.TempDir()
	top, mid, bottom := filepath.Join(tmp, "top"), filepath.Join(tmp, "mid"), filepath.Join(tmp, "bottom")
	tree(t, bottom, map[string]string{"f": "bottom", "g": "g", "dir/x": "x"})
	tree(t, mid, map[string]string{"f": "mid"})
	tree(t, top, map[string]string{"f": "top", "dir/y": "y"})
	userns := newUserNS(t)
	for _, tc := range []struct {
		name   string
		layers layers
		want   map[string]string
	}{
		{"no layers", layers{}, map[string]string{}},
		{"one layer", layers{bottom}, map[string]string{"f": "bottom", "g": "g", "dir/x": "x"}},
		{"three layers", layers{top, mid, bottom}, map[string]string{"f": "top", "g": "g", "dir/x": "x", "dir/y": "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := &Manager{Mounts: statedir.ImageVolumesUnder(filepath.Join(t.TempDir(), "state")), Layers: tc.layers}
			opts := MountOptions{Pod: podID, UserNS: userns}
			p, err := m.Mount(ctx, imageID, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Unmount(ctx, imageID, podID) })
			plain, err := m.Mount(ctx, imageID, MountOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Unmount(ctx, imageID, "") })
			hex := strings.TrimPrefix(imageID, "sha256:")
			if want := filepath.Join(m.Mounts.Root, hex+"@"+podID); p != want {
				t.Errorf("pod's mount point %s, want %s", p, want)
			}
			if plain != filepath.Join(m.Mounts.Root, hex) {
				t.Errorf("plain mount point %s", plain)
			}
			for name, content := range tc.want {
				if b, err := os.ReadFile(filepath.Join(p, name)); err != nil || string(b) != content {
					t.Errorf("%s = %q, %v; want %q", name, b, err, content)
				}
			}
			if ents, _ := os.ReadDir(p); len(tc.want) == 0 && len(ents) != 0 {
				t.Errorf("an image without layers shows %v", ents)
			}
			names := []string{"."}
			for name := range tc.want {
				names = append(names, name)
			}
			for _, name := range names {
				for root, want := range map[string]uint32{p: nsRoot, plain: 0} {
					var st unix.Stat_t
					if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
						t.Fatal(err)
					}
					if st.Uid != want || st.Gid != want {
						t.Errorf("%s is owned by %d:%d, want %d:%d", filepath.Join(root, name), st.Uid, st.Gid, want, want)
					}
				}
			}
			if err := os.WriteFile(filepath.Join(p, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write into the pod's mount: %v, want EROFS", err)
			}
			if p2, err := m.Mount(ctx, imageID, opts); err != nil || p2 != p {
				t.Fatalf("second Mount = %q, %v", p2, err)
			}
			if n := mountsAt(t, p); n != 1 {
				t.Fatalf("%d mounts at %s after two Mounts, want 1", n, p)
			}
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Mount(ctx, imageID, opts); err != nil {
				t.Fatalf("Mount after the mount went: %v", err)
			}
			if n := mountsAt(t, p); n != 1 {
				t.Fatalf("%d mounts at %s after mounting again, want 1", n, p)
			}
			for i := range 2 {
				if err := m.Unmount(ctx, imageID, podID); err != nil {
					t.Fatalf("Unmount #%d: %v", i+1, err)
				}
			}
			if n := mountsAt(t, p); n != 0 {
				t.Errorf("%d mounts left at %s", n, p)
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mount point left: %v", err)
			}
			if n := mountsAt(t, plain); n != 1 {
				t.Errorf("the pod's Unmount took the plain mount: %d mounts at %s", n, plain)
			}
		})
	}
}
