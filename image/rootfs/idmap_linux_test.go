package rootfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/internal/statedir"
)

// nsRoot is the host id that the test's user namespace maps 0 to.
const nsRoot = 100000

// newUserNS returns the user namespace file of a process that maps 0-65535
// to host nsRoot-(nsRoot+65535); the process is killed at the end of t.
func newUserNS(t *testing.T) string {
	t.Helper()
	return newUserNSMapping(t, syscall.SysProcIDMap{ContainerID: 0, HostID: nsRoot, Size: 65536})
}

// newUserNSMapping returns the user namespace file of a process whose uids
// and gids are mapped by idmap; the process is killed at the end of t.
func newUserNSMapping(t *testing.T, idmap syscall.SysProcIDMap) string {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{idmap},
		GidMappings: []syscall.SysProcIDMap{idmap},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new user namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

func owner(t *testing.T, path string) (uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// mountsUnder lists the mount points in this process's mount table at or
// below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// idmapFixture makes two layers of root-owned files in a directory that
// uid nsRoot can traverse, and a Manager over them.
func idmapFixture(t *testing.T) (tmp string, m *Manager, top, bottom string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root for idmapped mounts")
	}
	tmp = t.TempDir()
	// t.TempDir's directories are 0700; the namespace's root (host nsRoot)
	// must reach the rootfs.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	top, bottom = filepath.Join(tmp, "top"), filepath.Join(tmp, "bottom")
	files := map[string]string{
		filepath.Join(bottom, "f"):   "bottom",
		filepath.Join(top, "f"):      "top",
		filepath.Join(bottom, "g"):   "g\n",
		filepath.Join(bottom, "www"): "www",
	}
	for path, data := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An image file of a non-root owner (www-data) maps into the range too.
	if err := os.Lchown(filepath.Join(bottom, "www"), 33, 33); err != nil {
		t.Fatal(err)
	}
	m = &Manager{RootDir: filepath.Join(tmp, "root"), Containers: statedir.Containers{Root: filepath.Join(tmp, "state")}, Layers: dirs{top, bottom}}
	return tmp, m, top, bottom
}

func TestMountIDMapped(t *testing.T) {
	tmp, m, top, bottom := idmapFixture(t)
	userns := newUserNS(t)
	ctx := context.Background()
	p, err := m.Mount(ctx, "c1", "img", MountOptions{UserNS: userns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unmount(ctx, "c1") })

	// Only the overlay is in the mount table: the idmapped layers are
	// detached mounts that overlay holds on to.
	if got := mountsUnder(t, tmp); len(got) != 1 || got[0] != p {
		t.Fatalf("mounts under the test dir = %q, want just the rootfs %s", got, p)
	}
	if b, _ := os.ReadFile(filepath.Join(p, "f")); string(b) != "top" {
		t.Fatalf("f = %q, want the top layer's", b)
	}
	for path, want := range map[string]uint32{p: nsRoot, filepath.Join(p, "f"): nsRoot, filepath.Join(p, "g"): nsRoot, filepath.Join(p, "www"): nsRoot + 33} {
		if uid, gid := owner(t, path); uid != want || gid != want {
			t.Errorf("%s through the rootfs is owned by %d:%d, want %d:%d", path, uid, gid, want, want)
		}
	}

	// The container's root (host nsRoot) creates, copies up (g), deletes
	// (f, a whiteout over both layers) and makes a directory.
	sh := exec.Command("/bin/sh", "-c", `set -e; echo x > "$1/new"; echo y >> "$1/g"; rm "$1/f"; mkdir "$1/d"`, "sh", p)
	sh.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nsRoot, Gid: nsRoot}}
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("writes as the namespace's root: %v: %s", err, out)
	}
	upper := filepath.Join(m.RootDir, "c1", "upper")
	for _, name := range []string{"new", "g", "d", "f"} {
		if uid, gid := owner(t, filepath.Join(upper, name)); uid != 0 || gid != 0 {
			t.Errorf("upper/%s is owned by %d:%d on disk, want 0:0 (unmapped)", name, uid, gid)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "g")); string(b) != "g\ny\n" {
		t.Errorf("upper/g = %q, want the copied-up file with the append", b)
	}
	if fi, err := os.Lstat(filepath.Join(upper, "f")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("upper/f is not a whiteout: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(p, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed f still visible: %v", err)
	}
	// The layers are unchanged, and still owned by host root.
	if b, _ := os.ReadFile(filepath.Join(bottom, "g")); string(b) != "g\n" {
		t.Errorf("bottom/g = %q: the append reached a lower layer", b)
	}
	for _, path := range []string{filepath.Join(top, "f"), filepath.Join(bottom, "f")} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the rm reached a lower layer: %v", err)
		}
	}
	for _, l := range []string{top, bottom} {
		if _, err := os.Lstat(filepath.Join(l, "new")); err == nil {
			t.Errorf("write reached lower layer %s", l)
		}
		if uid, gid := owner(t, filepath.Join(l, "f")); uid != 0 || gid != 0 {
			t.Errorf("%s/f is owned by %d:%d on disk, want 0:0", l, uid, gid)
		}
	}
	// Host root has no id in the namespace: it cannot create files there.
	if err := os.WriteFile(filepath.Join(p, "by-host-root"), nil, 0o644); !errors.Is(err, syscall.EOVERFLOW) {
		t.Errorf("create as host root = %v, want EOVERFLOW", err)
	}

	if p2, err := m.Mount(ctx, "c1", "img", MountOptions{UserNS: userns}); err != nil || p2 != p {
		t.Fatalf("second mount = %q, %v", p2, err)
	}
	if err := m.Unmount(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if got := mountsUnder(t, tmp); len(got) != 0 {
		t.Fatalf("mounts left under the test dir: %q", got)
	}
	for _, d := range []string{p, filepath.Join(m.RootDir, "c1")} {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", d, err)
		}
	}
	if err := m.Unmount(ctx, "c1"); err != nil {
		t.Fatalf("second unmount: %v", err)
	}
}

func TestMountIDMappedErrors(t *testing.T) {
	tmp, m, _, _ := idmapFixture(t)
	regular := filepath.Join(tmp, "regular")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missingLayer := filepath.Join(tmp, "missing-layer")
	userns := newUserNS(t)
	noRoot := newUserNSMapping(t, syscall.SysProcIDMap{ContainerID: 1, HostID: nsRoot + 1, Size: 65535})
	for _, tc := range []struct {
		name, userns string
		layers       dirs
		want         []string // in the error
	}{
		{name: "missing namespace file", userns: filepath.Join(tmp, "nope"), want: []string{"user namespace", filepath.Join(tmp, "nope"), "no such file"}},
		{name: "regular file", userns: regular, want: []string{regular, "not a user namespace file"}},
		{name: "network namespace", userns: "/proc/self/ns/net", want: []string{"/proc/self/ns/net", "not a user namespace file"}},
		{name: "own user namespace", userns: "/proc/self/ns/user", want: []string{"/proc/self/ns/user", "the daemon's own"}},
		{name: "namespace without root", userns: noRoot, want: []string{"overlay came up read-only", "map container root"}},
		{name: "missing layer", userns: userns, layers: dirs{missingLayer}, want: []string{"idmap layer " + missingLayer, "open_tree", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mm := *m
			if tc.layers != nil {
				mm.Layers = tc.layers
			}
			_, err := mm.Mount(context.Background(), "c1", "img", MountOptions{UserNS: tc.userns})
			if err == nil {
				_ = mm.Unmount(context.Background(), "c1")
				t.Fatal("mount succeeded")
			}
			for _, w := range append([]string{"rootfs c1: "}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := mountsUnder(t, tmp); len(got) != 0 {
				t.Errorf("mounts left: %q", got)
			}
			for _, d := range []string{m.path("c1"), filepath.Join(m.RootDir, "c1")} {
				if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left: %v", d, err)
				}
			}
		})
	}
}

func TestSupportsIDMap(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for idmapped mounts")
	}
	dir := t.TempDir()
	if err := SupportsIDMap(dir, newUserNS(t)); err != nil {
		t.Fatalf("SupportsIDMap on %s: %v", dir, err)
	}
	if err := SupportsIDMap(dir, "/proc/self/ns/net"); err == nil || !strings.Contains(err.Error(), "not a user namespace") {
		t.Fatalf("SupportsIDMap with a network namespace = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("the probe left %v in %s", ents, dir)
	}
	if got := mountsUnder(t, dir); len(got) != 0 {
		t.Fatalf("the probe left mounts: %q", got)
	}
}

// Layers go to overlay as descriptors, so the 4095 bytes of mount options
// that cap a plain rootfs do not cap an idmapped one.
func TestMountIDMappedPastOptionLimit(t *testing.T) {
	tmp, m, _, _ := idmapFixture(t)
	var layers dirs
	for i := range 100 {
		l := filepath.Join(tmp, fmt.Sprintf("layer-%03d-%s", i, strings.Repeat("x", 40)))
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("f%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	if n := len(strings.Join(layers, ":")); n <= maxMountData {
		t.Fatalf("the layer paths make %d bytes, not over the limit", n)
	}
	m.Layers = layers
	ctx := context.Background()
	if _, err := m.Mount(ctx, "plain", "img", MountOptions{}); err == nil {
		_ = m.Unmount(ctx, "plain")
		t.Fatal("a plain mount took options over the kernel's limit")
	}
	p, err := m.Mount(ctx, "c1", "img", MountOptions{UserNS: newUserNS(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unmount(ctx, "c1") })
	for _, f := range []string{"f000", "f099"} {
		if _, err := os.Stat(filepath.Join(p, f)); err != nil {
			t.Errorf("layer file %s: %v", f, err)
		}
	}
	if err := m.Unmount(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if got := mountsUnder(t, tmp); len(got) != 0 {
		t.Fatalf("mounts left: %q", got)
	}
}

// TestMountReadOnlyIDMapped mounts one, two and three layers read-only
// and idmapped: the layers' files show owned by the namespace's ids, the
// top-most layer wins, a root-only directory of the image is readable by
// the namespace's root (the overlay, made with host root's credentials,
// reads its layers as host root may), nothing can be written, and the
// mount is the only one in the mount table.
func TestMountReadOnlyIDMapped(t *testing.T) {
	tmp, _, top, bottom := idmapFixture(t)
	mid := filepath.Join(tmp, "mid")
	secret := filepath.Join(bottom, "private", "secret")
	for path, data := range map[string]string{filepath.Join(mid, "f"): "mid", filepath.Join(mid, "m"): "m", secret: "root only"} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Dir(secret), 0o700); err != nil {
		t.Fatal(err)
	}
	// The middle layer deletes bottom's "gone" (a whiteout) and hides what
	// bottom has in "o" (an opaque directory), as the unpacker writes
	// them: overlay reads them through the idmapped layers as well.
	for path, data := range map[string]string{filepath.Join(bottom, "gone"): "", filepath.Join(bottom, "o", "hidden"): "", filepath.Join(mid, "o", "kept"): "kept"} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(mid, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(mid, "o"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	userns := newUserNS(t)
	for _, tc := range []struct {
		name   string
		layers []string
		want   map[string]string
		absent []string
	}{
		{"one layer", []string{bottom}, map[string]string{"f": "bottom", "g": "g\n", "gone": "", "o/hidden": ""}, nil},
		{"two layers", []string{top, bottom}, map[string]string{"f": "top", "g": "g\n", "gone": ""}, nil},
		{"three layers", []string{top, mid, bottom}, map[string]string{"f": "top", "m": "m", "g": "g\n", "o/kept": "kept"}, []string{"gone", "o/hidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(tmp, "mnt")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Remove(target) })
			if err := MountReadOnlyIDMapped(tc.layers, target, userns); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Unmount(target, syscall.MNT_DETACH) })
			if got := mountsUnder(t, tmp); len(got) != 1 || got[0] != target {
				t.Fatalf("mounts under the test dir = %q, want just %s", got, target)
			}
			for name, want := range tc.want {
				if b, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(b) != want {
					t.Errorf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
			for _, name := range tc.absent {
				if _, err := os.Lstat(filepath.Join(target, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s, deleted by an upper layer, shows: %v", name, err)
				}
			}
			for path, want := range map[string]uint32{target: nsRoot, filepath.Join(target, "f"): nsRoot, filepath.Join(target, "www"): nsRoot + 33} {
				if uid, gid := owner(t, path); uid != want || gid != want {
					t.Errorf("%s is owned by %d:%d, want %d:%d", path, uid, gid, want, want)
				}
			}
			// The namespace's root reads the image's root-only file; it
			// writes nothing, and neither does host root.
			sh := exec.Command("/bin/sh", "-c", `cat "$1/private/secret"; echo x > "$1/new" && echo written`, "sh", target)
			sh.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nsRoot, Gid: nsRoot}}
			out, _ := sh.CombinedOutput()
			if !strings.HasPrefix(string(out), "root only") || !strings.Contains(string(out), "Read-only file system") {
				t.Errorf("as the namespace's root: %q, want the secret read and the write refused (EROFS)", out)
			}
			for _, p := range []string{filepath.Join(target, "new"), filepath.Join(target, "f")} {
				if err := os.WriteFile(p, nil, 0o644); !errors.Is(err, syscall.EROFS) {
					t.Errorf("write %s as host root = %v, want EROFS", p, err)
				}
			}
			var st unix.Statfs_t
			if err := unix.Statfs(target, &st); err != nil {
				t.Fatal(err)
			}
			if st.Flags&unix.ST_RDONLY == 0 || st.Flags&unix.ST_NODEV == 0 {
				t.Errorf("mount flags %#x, want read-only and nodev", st.Flags)
			}
			if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if got := mountsUnder(t, tmp); len(got) != 0 {
				t.Fatalf("mounts left: %q", got)
			}
			for _, l := range tc.layers {
				if uid, gid := owner(t, filepath.Join(l, "f")); uid != 0 || gid != 0 {
					t.Errorf("%s/f is owned by %d:%d on disk, want 0:0", l, uid, gid)
				}
			}
		})
	}
}

func TestMountReadOnlyIDMappedErrors(t *testing.T) {
	tmp, _, top, bottom := idmapFixture(t)
	userns := newUserNS(t)
	target := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing-layer")
	for _, tc := range []struct {
		name   string
		layers []string
		userns string
		want   []string
	}{
		{name: "no layers", userns: userns, want: []string{target, "no layers"}},
		{name: "not a user namespace", layers: []string{top, bottom}, userns: "/proc/self/ns/net", want: []string{"/proc/self/ns/net", "not a user namespace file"}},
		{name: "own user namespace", layers: []string{bottom}, userns: "/proc/self/ns/user", want: []string{"the daemon's own"}},
		{name: "missing layer", layers: []string{top, missing}, userns: userns, want: []string{"idmap layer " + missing, "open_tree", "no such file"}},
		{name: "missing single layer", layers: []string{missing}, userns: userns, want: []string{"idmap layer " + missing, "no such file"}},
		{name: "missing target", layers: []string{top, bottom}, userns: userns, want: []string{"move_mount", filepath.Join(tmp, "none")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt := target
			if tc.name == "missing target" {
				tgt = filepath.Join(tmp, "none")
			}
			err := MountReadOnlyIDMapped(tc.layers, tgt, tc.userns)
			if err == nil {
				_ = syscall.Unmount(tgt, syscall.MNT_DETACH)
				t.Fatal("mount succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := mountsUnder(t, tmp); len(got) != 0 {
				t.Errorf("mounts left: %q", got)
			}
		})
	}
}
