package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every file and the creation time of every
// image: fixed, so that the same image set always has the same digests.
var epoch = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// entry is one member of a layer tarball.
type entry struct {
	name     string // relative to the root, no leading slash
	typ      byte   // tar.TypeReg, tar.TypeDir, tar.TypeLink, tar.TypeSymlink
	mode     int64  // permission bits, including setuid/setgid/sticky
	uid, gid int
	data     []byte // regular files
	link     string // hard link target, a path in the layer; or a symlink's target
	// open streams large regular file contents instead of data.
	open func() io.Reader
	size int64
}

const regType = tar.TypeReg

func dir(name string, mode int64) entry { return entry{name: name, typ: tar.TypeDir, mode: mode} }

func file(name string, mode int64, data string) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, data: []byte(data)}
}

func binary(name string, mode int64, data []byte) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, data: data}
}

// symlink makes name a symbolic link to target, as written.
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}

// hardlink links name to target, both relative to the root. mode must be
// the target's: extractors apply a link header's metadata to the shared
// inode, so a zero mode would make the target unusable.
func hardlink(name, target string, mode int64) entry {
	return entry{name: name, typ: tar.TypeLink, link: target, mode: mode}
}

func owned(e entry, uid, gid int) entry {
	e.uid, e.gid = uid, gid
	return e
}

// writeTar writes entries in order, adding any parent directory that was not
// listed (0755, root-owned) before its first child, as image builders do.
func writeTar(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	var addParents func(p string) error
	addParents = func(p string) error {
		parent := path.Dir(p)
		if parent == "." || parent == "/" || seen[parent] {
			return nil
		}
		if err := addParents(parent); err != nil {
			return err
		}
		seen[parent] = true
		return tw.WriteHeader(header(dir(parent, 0o755)))
	}
	for _, e := range entries {
		e.name = strings.Trim(path.Clean(e.name), "/")
		if e.name == "" || e.name == "." || strings.HasPrefix(e.name, "..") {
			return fmt.Errorf("layer entry %q: not a path inside the root", e.name)
		}
		if err := addParents(e.name); err != nil {
			return fmt.Errorf("layer entry %q: %w", e.name, err)
		}
		if e.typ == tar.TypeDir {
			seen[e.name] = true
		}
		if err := tw.WriteHeader(header(e)); err != nil {
			return fmt.Errorf("layer entry %q: %w", e.name, err)
		}
		if e.typ != tar.TypeReg {
			continue
		}
		var src io.Reader = bytes.NewReader(e.data)
		if e.open != nil {
			src = io.LimitReader(e.open(), e.size)
		}
		if _, err := io.Copy(tw, src); err != nil {
			return fmt.Errorf("layer entry %q: %w", e.name, err)
		}
	}
	return tw.Close()
}

func header(e entry) *tar.Header {
	h := &tar.Header{
		Typeflag: e.typ,
		Name:     e.name,
		Mode:     e.mode,
		Uid:      e.uid,
		Gid:      e.gid,
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
	switch e.typ {
	case tar.TypeDir:
		h.Name += "/"
	case tar.TypeReg:
		h.Size = int64(len(e.data))
		if e.open != nil {
			h.Size = e.size
		}
	case tar.TypeLink, tar.TypeSymlink:
		h.Linkname = e.link
	}
	return h
}

// compress builds a gzip-compressed layer tarball from entries. Each layer
// is compressed once (deterministically: no name or time in the gzip header)
// and shared by every image and media type that uses it.
func compress(entries []entry, level int) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		return nil, err
	}
	if err := writeTar(zw, entries); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layerOf wraps compressed layer bytes as a layer of media type mt.
func layerOf(gz []byte, mt types.MediaType) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(mt))
}
