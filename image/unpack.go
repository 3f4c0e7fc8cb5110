package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// Overlay whiteout conventions of OCI layers.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpack extracts the tar stream r into the directory root so that nothing
// can be created or changed outside root, and converts OCI whiteouts to
// overlayfs form. Every path is resolved with openat2(RESOLVE_IN_ROOT), so
// symlinks (absolute or with "..") are followed as if root were "/", and the
// last component is always created with *at calls that do not follow it.
//
// Policy for hostile or unusual entries:
//   - absolute names are taken relative to root ("/etc/x" is root/etc/x);
//   - names or hardlink targets that climb out of root with ".." are refused;
//   - symlinks may point anywhere (they are only data), but later entries are
//     never written through them outside root;
//   - hardlinks must name an existing non-directory inside this layer;
//   - character and block devices are skipped (a layer may not create device
//     nodes); fifos are created;
//   - xattrs from the tar are ignored; ".wh.<name>" becomes a 0/0 character
//     device <name> and ".wh..wh..opq" sets trusted.overlay.opaque=y on its
//     directory;
//   - owners come from the header (lchown), modes keep setuid/setgid/sticky;
//   - with max > 0, more than max bytes of file content is an error.
//
// Ownership and whiteouts need root; unpack is only used by a root daemon.
func unpack(ctx context.Context, root string, r io.Reader, max int64) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	u := &unpacker{root: fd, rootPath: root, max: max, chown: os.Geteuid() == 0}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errdefs.InvalidArgument("layer tar: %v", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	return u.finishDirs()
}

type dirMeta struct {
	rel string
	hdr *tar.Header
}

type unpacker struct {
	root     int
	rootPath string
	max      int64
	total    int64
	chown    bool
	dirs     []dirMeta
}

// cleanName maps a tar name to a path relative to the root: "." for the root
// itself. Absolute names are re-rooted; names that climb out are refused.
func cleanName(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", errdefs.InvalidArgument("bad name %q", name)
	}
	p := path.Clean(name)
	if strings.HasPrefix(p, "/") {
		p = strings.TrimLeft(p, "/")
		if p == "" {
			return ".", nil
		}
		return p, nil
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errdefs.InvalidArgument("path %q escapes the layer root", name)
	}
	return p, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag == tar.TypeDir {
			u.dirs = append(u.dirs, dirMeta{rel: ".", hdr: hdr})
		}
		return nil
	}
	dir, base := path.Split(rel)
	dir = path.Clean("/" + dir)[1:]
	if dir == "" {
		dir = "."
	}

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}

	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		return nil // device nodes from layers are never created
	case tar.TypeXGlobalHeader, tar.TypeXHeader:
		return nil
	}
	uid, gid, err := owner(hdr)
	if err != nil {
		return err
	}

	pfd, err := u.ensureDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(pfd, base); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return u.pathErr("mkdirat", rel, err)
			}
		} else if err != nil {
			return u.pathErr("fstatat", rel, err)
		}
		u.dirs = append(u.dirs, dirMeta{rel: rel, hdr: hdr})
		return nil

	case tar.TypeReg, tar.TypeGNUSparse:
		if hdr.Size < 0 {
			return errdefs.InvalidArgument("negative size")
		}
		u.total += hdr.Size
		if u.max > 0 && u.total > u.max {
			return errdefs.ResourceExhausted("layer content exceeds the limit of %d bytes", u.max)
		}
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return u.pathErr("openat", rel, err)
		}
		f := os.NewFile(uintptr(fd), rel)
		n, err := io.Copy(f, r)
		if err == nil && n != hdr.Size && hdr.Typeflag != tar.TypeGNUSparse {
			err = errdefs.InvalidArgument("short file content: %d of %d bytes", n, hdr.Size)
		}
		if err == nil && u.chown {
			err = unix.Fchown(fd, uid, gid)
		}
		if err == nil {
			err = unix.Fchmod(fd, uint32(hdr.Mode&0o7777))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}

	case tar.TypeSymlink:
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return u.pathErr("symlinkat", rel, err)
		}
		if u.chown {
			if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return u.pathErr("lchown", rel, err)
			}
		}

	case tar.TypeLink:
		trel, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		if trel == "." {
			return errdefs.InvalidArgument("hardlink to the layer root")
		}
		if trel == rel {
			return nil
		}
		tdir, tbase := path.Split(trel)
		tdir = path.Clean("/" + tdir)[1:]
		if tdir == "" {
			tdir = "."
		}
		tfd, err := u.openDir(tdir)
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, u.pathErr("openat2", tdir, err))
		}
		defer unix.Close(tfd)
		var st unix.Stat_t
		if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("hardlink target %q not in this layer: %w", hdr.Linkname, u.pathErr("fstatat", trel, err))
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return errdefs.InvalidArgument("hardlink target %q is a directory", hdr.Linkname)
		}
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		// flags 0: a symlink target is linked itself, never followed.
		if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
			return u.pathErr("linkat", rel, err)
		}
		return nil

	case tar.TypeFifo:
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		if err := unix.Mknodat(pfd, base, unix.S_IFIFO|uint32(hdr.Mode&0o777), 0); err != nil {
			return u.pathErr("mknodat", rel, err)
		}
		if u.chown {
			if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return u.pathErr("lchown", rel, err)
			}
		}
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return u.pathErr("fchmodat", rel, err)
		}

	default:
		return nil // unknown types carry nothing we could place safely
	}
	return u.setTimes(pfd, base, rel, hdr)
}

// whiteout converts an OCI whiteout entry to overlayfs form.
func (u *unpacker) whiteout(dir, base string) error {
	pfd, err := u.ensureDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if base == whiteoutOpaque {
		if err := unix.Fsetxattr(pfd, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return u.pathErr("setxattr trusted.overlay.opaque", dir, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, ...) has no overlay meaning
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return errdefs.InvalidArgument("bad whiteout %q", base)
	}
	if err := removeAt(pfd, name); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return u.pathErr("mknodat whiteout", path.Join(dir, name), err)
	}
	return nil
}

// finishDirs applies directory owners, modes and times after all entries,
// so that writing children neither fails on read-only dirs nor moves mtimes.
func (u *unpacker) finishDirs() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		uid, gid, err := owner(d.hdr)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", d.hdr.Name, err)
		}
		fd, err := u.openDirNoFollow(d.rel)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
			continue // replaced or removed by a later entry
		}
		if err != nil {
			return u.pathErr("openat2", d.rel, err)
		}
		if u.chown {
			err = unix.Fchown(fd, uid, gid)
		}
		if err == nil {
			err = unix.Fchmod(fd, uint32(d.hdr.Mode&0o7777))
		}
		if err == nil {
			ts := times(d.hdr)
			err = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
			if errors.Is(err, unix.EINVAL) {
				err = unix.Futimes(fd, []unix.Timeval{unix.NsecToTimeval(ts[0].Nano()), unix.NsecToTimeval(ts[1].Nano())})
			}
		}
		unix.Close(fd)
		if err != nil {
			return u.pathErr("set dir metadata", d.rel, err)
		}
	}
	return nil
}

func (u *unpacker) setTimes(pfd int, base, rel string, hdr *tar.Header) error {
	if err := unix.UtimesNanoAt(pfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return u.pathErr("utimensat", rel, err)
	}
	return nil
}

func times(hdr *tar.Header) []unix.Timespec {
	ts := func(t time.Time) unix.Timespec {
		if t.IsZero() {
			return unix.Timespec{Sec: 0, Nsec: 0}
		}
		return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return []unix.Timespec{ts(at), ts(hdr.ModTime)}
}

func owner(hdr *tar.Header) (int, int, error) {
	const maxID = 1<<32 - 2
	if hdr.Uid < 0 || hdr.Uid > maxID || hdr.Gid < 0 || hdr.Gid > maxID {
		return 0, 0, errdefs.InvalidArgument("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	return hdr.Uid, hdr.Gid, nil
}

var resolveInRoot = uint64(unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV)

// openDir opens rel as a directory, resolving every component (symlinks
// included) as if u's root were "/".
func (u *unpacker) openDir(rel string) (int, error) {
	return openat2(u.root, rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
}

// openDirNoFollow is openDir that refuses a symlink as the last component.
func (u *unpacker) openDirNoFollow(rel string) (int, error) {
	return openat2(u.root, rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW)
}

func openat2(dirfd int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags), Resolve: resolveInRoot}
	for range 16 {
		fd, err := unix.Openat2(dirfd, rel, how)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// ensureDir opens directory rel, creating missing components (0755, root
// owned, as a tar without directory entries implies).
func (u *unpacker) ensureDir(rel string) (int, error) {
	fd, err := u.openDir(rel)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) || rel == "." {
		return -1, u.pathErr("openat2", rel, err)
	}
	parent, base := path.Split(rel)
	parent = path.Clean("/" + parent)[1:]
	if parent == "" {
		parent = "."
	}
	pfd, err := u.ensureDir(parent)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(pfd, base, 0o755)
	unix.Close(pfd)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, u.pathErr("mkdirat", rel, err)
	}
	fd, err = u.openDir(rel)
	if err != nil {
		// EEXIST above but still absent: a dangling symlink is in the way.
		return -1, u.pathErr("openat2", rel, err)
	}
	return fd, nil
}

// removeAt removes whatever is at name in the directory dirfd (a directory
// with its contents); absence is fine. Nothing is followed.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err == nil {
		return nil
	}
	// Non-empty directory: os.RemoveAll walks with *at calls and never follows
	// symlinks; the /proc/self/fd prefix pins the already-resolved parent.
	return os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name))
}

func (u *unpacker) pathErr(op, rel string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &os.PathError{Op: op, Path: path.Join(u.rootPath, rel), Err: err}
}
