package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{in: "a/b", want: "a/b"},
		{in: "./a/b/", want: "a/b"},
		{in: "/etc/passwd", want: "etc/passwd"},
		{in: "/../etc/passwd", want: "etc/passwd"},
		{in: "a/../b", want: "b"},
		{in: "./", want: "."},
		{in: "/", want: "."},
		{in: "../x", bad: true},
		{in: "a/../../x", bad: true},
		{in: "..", bad: true},
		{in: "", bad: true},
		{in: "a\x00b", bad: true},
	} {
		got, err := cleanName(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("cleanName(%q) = %q, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// unpackCase is a layer and what unpacking it must (not) produce. Each case
// gets a fresh tmp dir holding root/ (the layer) and outside/ (with a file
// "secret" that must never change or gain links).
type unpackCase struct {
	name    string
	entries []tarEntry
	max     int64
	wantErr error // kind the error must wrap; nil = must succeed
	failOK  bool  // an error is acceptable (the escape is refused), success too if check passes
	check   func(t *testing.T, root, outside string)
}

func TestUnpack(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: mknod, lchown, trusted xattrs")
	}
	cases := []unpackCase{
		{
			name:    "dotdot escape refused",
			entries: []tarEntry{{name: "../escaped", body: "x"}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "nested dotdot escape refused",
			entries: []tarEntry{{name: "a/../../escaped", body: "x"}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "absolute path re-rooted",
			entries: []tarEntry{{name: "/abs/file", body: "x"}},
			check: func(t *testing.T, root, _ string) {
				mustContent(t, filepath.Join(root, "abs/file"), "x")
			},
		},
		{
			name: "symlink to outside may exist but is not written through",
			entries: []tarEntry{
				{name: "link", typ: tar.TypeSymlink, linkname: "@OUTSIDE@"},
				{name: "link/secret", body: "pwned"},
			},
			failOK: true,
			check: func(t *testing.T, root, _ string) {
				if target, err := os.Readlink(filepath.Join(root, "link")); err == nil && !strings.HasSuffix(target, "outside") {
					t.Errorf("link target = %q", target)
				}
			},
		},
		{
			name: "relative symlink climbing out resolves inside root",
			entries: []tarEntry{
				{name: "up", typ: tar.TypeSymlink, linkname: "../../../../../../.."},
				{name: "up/inroot", body: "x"},
			},
			failOK: true,
			check: func(t *testing.T, root, _ string) {
				if _, err := os.Lstat(filepath.Join(root, "inroot")); err != nil && !os.IsNotExist(err) {
					t.Error(err)
				}
			},
		},
		{
			name: "file replaces symlink instead of writing through it",
			entries: []tarEntry{
				{name: "f", typ: tar.TypeSymlink, linkname: "@OUTSIDE@/secret"},
				{name: "f", body: "mine"},
			},
			check: func(t *testing.T, root, _ string) {
				mustContent(t, filepath.Join(root, "f"), "mine")
			},
		},
		{
			name:    "hardlink to host /etc/passwd",
			entries: []tarEntry{{name: "passwd", typ: tar.TypeLink, linkname: "/etc/passwd"}},
			failOK:  true,
			check: func(t *testing.T, root, _ string) {
				if sameFile(filepath.Join(root, "passwd"), "/etc/passwd") {
					t.Error("linked to the host's /etc/passwd")
				}
			},
		},
		{
			name:    "hardlink with dotdot target refused",
			entries: []tarEntry{{name: "passwd", typ: tar.TypeLink, linkname: "../../../../../../etc/passwd"}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "hardlink through symlink stays in root",
			entries: []tarEntry{
				{name: "evil", typ: tar.TypeSymlink, linkname: "@OUTSIDE@"},
				{name: "stolen", typ: tar.TypeLink, linkname: "evil/secret"},
			},
			failOK: true,
		},
		{
			name: "hardlink to a symlink links the symlink",
			entries: []tarEntry{
				{name: "sl", typ: tar.TypeSymlink, linkname: "@OUTSIDE@/secret"},
				{name: "hl", typ: tar.TypeLink, linkname: "sl"},
			},
			check: func(t *testing.T, root, _ string) {
				fi, err := os.Lstat(filepath.Join(root, "hl"))
				if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("hl = %v, %v; want a symlink", fi, err)
				}
			},
		},
		{
			name: "hardlink inside layer",
			entries: []tarEntry{
				{name: "bin/", typ: tar.TypeDir},
				{name: "bin/busybox", body: "elf", mode: 0o755},
				{name: "bin/sh", typ: tar.TypeLink, linkname: "bin/busybox"},
			},
			check: func(t *testing.T, root, _ string) {
				if !sameFile(filepath.Join(root, "bin/sh"), filepath.Join(root, "bin/busybox")) {
					t.Error("bin/sh is not a hardlink of bin/busybox")
				}
			},
		},
		{
			name: "device nodes skipped, fifo created",
			entries: []tarEntry{
				{name: "dev/", typ: tar.TypeDir},
				{name: "dev/sda", typ: tar.TypeBlock},
				{name: "dev/null", typ: tar.TypeChar},
				{name: "dev/pipe", typ: tar.TypeFifo},
			},
			check: func(t *testing.T, root, _ string) {
				for _, n := range []string{"dev/sda", "dev/null"} {
					if _, err := os.Lstat(filepath.Join(root, n)); !os.IsNotExist(err) {
						t.Errorf("%s: %v, want absent", n, err)
					}
				}
				if fi, err := os.Lstat(filepath.Join(root, "dev/pipe")); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
					t.Errorf("dev/pipe = %v, %v", fi, err)
				}
			},
		},
		{
			name: "whiteout becomes 0/0 char device",
			entries: []tarEntry{
				{name: "etc/", typ: tar.TypeDir},
				{name: "etc/.wh.gone", body: ""},
				{name: ".wh..wh.plnk", typ: tar.TypeDir},
			},
			check: func(t *testing.T, root, _ string) {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(root, "etc/gone"), &st); err != nil {
					t.Fatal(err)
				}
				if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
					t.Errorf("etc/gone mode %o rdev %d, want char 0/0", st.Mode, st.Rdev)
				}
				if _, err := os.Lstat(filepath.Join(root, "etc/.wh.gone")); !os.IsNotExist(err) {
					t.Errorf(".wh. file kept: %v", err)
				}
				if _, err := os.Lstat(filepath.Join(root, ".wh..wh.plnk")); !os.IsNotExist(err) {
					t.Errorf("aufs metadata kept: %v", err)
				}
			},
		},
		{
			name: "opaque dir",
			entries: []tarEntry{
				{name: "opq/", typ: tar.TypeDir},
				{name: "opq/.wh..wh..opq"},
				{name: "opq/new", body: "n"},
			},
			check: func(t *testing.T, root, _ string) {
				buf := make([]byte, 8)
				n, err := unix.Lgetxattr(filepath.Join(root, "opq"), "trusted.overlay.opaque", buf)
				if err != nil || string(buf[:n]) != "y" {
					t.Errorf("opaque xattr = %q, %v", buf[:n], err)
				}
				mustContent(t, filepath.Join(root, "opq/new"), "n")
			},
		},
		{
			name: "modes, setuid and owners kept",
			entries: []tarEntry{
				{name: "ro/", typ: tar.TypeDir, mode: 0o555, uid: 7, gid: 8},
				{name: "ro/suid", body: "x", mode: 0o4755, uid: 1000, gid: 1001},
				{name: "ln", typ: tar.TypeSymlink, linkname: "ro/suid", uid: 5, gid: 6},
			},
			check: func(t *testing.T, root, _ string) {
				checkStat(t, filepath.Join(root, "ro"), 0o555|uint32(unix.S_IFDIR), 7, 8)
				checkStat(t, filepath.Join(root, "ro/suid"), 0o4755|uint32(unix.S_IFREG), 1000, 1001)
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(root, "ln"), &st); err != nil || st.Uid != 5 || st.Gid != 6 {
					t.Errorf("symlink owner %d:%d, %v", st.Uid, st.Gid, err)
				}
			},
		},
		{
			name: "implicit parents created",
			entries: []tarEntry{
				{name: "x/y/z", body: "deep"},
			},
			check: func(t *testing.T, root, _ string) {
				mustContent(t, filepath.Join(root, "x/y/z"), "deep")
			},
		},
		{
			name: "dir replaces file",
			entries: []tarEntry{
				{name: "d", body: "file"},
				{name: "d/", typ: tar.TypeDir},
				{name: "d/in", body: "in"},
			},
			check: func(t *testing.T, root, _ string) {
				mustContent(t, filepath.Join(root, "d/in"), "in")
			},
		},
		{
			name: "max size",
			entries: []tarEntry{
				{name: "a", body: strings.Repeat("a", 600)},
				{name: "b", body: strings.Repeat("b", 600)},
			},
			max:     1000,
			wantErr: errdefs.ErrResourceExhausted,
		},
		{
			name: "within max size",
			entries: []tarEntry{
				{name: "a", body: strings.Repeat("a", 600)},
			},
			max: 1000,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			root, outside := filepath.Join(tmp, "root"), filepath.Join(tmp, "outside")
			for _, d := range []string{root, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			secret := filepath.Join(outside, "secret")
			if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			entries := make([]tarEntry, len(tc.entries))
			for i, e := range tc.entries {
				e.linkname = strings.ReplaceAll(e.linkname, "@OUTSIDE@", outside)
				entries[i] = e
			}
			err := unpack(context.Background(), root, bytes.NewReader(buildTar(t, entries...)), tc.max)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
			case tc.failOK:
				t.Logf("unpack: %v", err)
			case err != nil:
				t.Fatalf("unpack: %v", err)
			}
			if tc.check != nil && (err == nil || tc.failOK) {
				tc.check(t, root, outside)
			}
			assertConfined(t, tmp, root, outside, secret)
		})
	}
}

// assertConfined checks that nothing but root's contents changed in tmp and
// that the outside secret is untouched and unlinked.
func assertConfined(t *testing.T, tmp, root, outside, secret string) {
	t.Helper()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Errorf("tmp has %d entries, want root and outside only", len(ents))
	}
	ents, err = os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "secret" {
		t.Errorf("outside dir changed: %v", ents)
	}
	mustContent(t, secret, "secret")
	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil || st.Nlink != 1 {
		t.Errorf("secret nlink = %d, %v", st.Nlink, err)
	}
	// Nothing inside root may be a hardlink of anything outside it.
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root && sameFile(p, secret) {
			t.Errorf("%s is a link to the outside secret", p)
		}
		return nil
	})
}

func mustContent(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != want {
		t.Errorf("%s = %q, %v; want %q", p, b, err, want)
	}
}

func checkStat(t *testing.T, p string, mode, uid, gid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, st.Mode, st.Uid, st.Gid, mode, uid, gid)
	}
}

func sameFile(a, b string) bool {
	fa, err1 := os.Lstat(a)
	fb, err2 := os.Lstat(b)
	if err1 != nil || err2 != nil {
		return false
	}
	sa, sb := fa.Sys().(*syscall.Stat_t), fb.Sys().(*syscall.Stat_t)
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// FuzzUnpack feeds arbitrary bytes to the unpacker and checks that, whatever
// the archive, nothing appears or changes outside the root.
func FuzzUnpack(f *testing.F) {
	seeds := [][]tarEntry{
		{{name: "../escaped", body: "x"}},
		{{name: "link", typ: tar.TypeSymlink, linkname: "/tmp"}, {name: "link/x", body: "x"}},
		{{name: "up", typ: tar.TypeSymlink, linkname: "../.."}, {name: "up/x", body: "x"}},
		{{name: "hl", typ: tar.TypeLink, linkname: "/etc/passwd"}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/.wh..wh..opq"}, {name: "d/.wh.x"}, {name: "d/f", body: "f"}},
		{{name: "a", body: "a"}, {name: "b", typ: tar.TypeLink, linkname: "a"}, {name: "a/", typ: tar.TypeDir}},
	}
	for _, s := range seeds {
		f.Add(buildTar(f, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Getuid() != 0 {
			t.Skip("needs root")
		}
		tmp := t.TempDir()
		root, outside := filepath.Join(tmp, "root"), filepath.Join(tmp, "outside")
		for _, d := range []string{root, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		secret := filepath.Join(outside, "secret")
		if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = unpack(context.Background(), root, bytes.NewReader(data), 1<<20)
		assertConfined(t, tmp, root, outside, secret)
	})
}
