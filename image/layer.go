package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// committedMarker is written, fsync'd, inside a layer's tmp dir before the
// dir is renamed into layers/; a layer dir without it is debris of a crash.
const committedMarker = "committed"

func (s *Store) layerPath(chainID string) string {
	return filepath.Join(s.layersDir, hexOf(chainID))
}

func (s *Store) layerCommitted(chainID string) bool {
	_, err := os.Stat(filepath.Join(s.layerPath(chainID), committedMarker))
	return err == nil
}

// fetchLayer streams one layer from the registry and unpacks it while it
// downloads: compressed bytes are hashed against the manifest digest, the
// decompressed tar is hashed against the config's diff ID and extracted into
// a tmp dir, which is renamed into place only when both digests match.
func (s *Store) fetchLayer(ctx context.Context, l v1.Layer, desc v1.Descriptor, diffID, chainID string) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return s.unpackStream(ctx, rc, desc.Digest.String(), diffID, chainID)
}

// unpackStream unpacks one compressed (gzip, zstd) or plain layer stream and
// commits it as chainID when its digests are digest and diffID.
func (s *Store) unpackStream(ctx context.Context, compressed io.Reader, digest, diffID, chainID string) (err error) {
	ch := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(&ctxReader{ctx: ctx, r: compressed}, ch), 1<<16)
	dec, closeDec, err := decompressor(br)
	if err != nil {
		return err
	}
	defer closeDec()
	dh := sha256.New()
	tr := io.TeeReader(dec, dh)

	tmp, err := os.MkdirTemp(s.tmpDir, "layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fsDir := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return err
	}
	if err := unpack(ctx, fsDir, tr, s.maxLayer); err != nil {
		return err
	}
	// The tar end marker and padding belong to the diff ID; anything after
	// the compressed stream belongs to the blob digest.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if err := checkSum(ch, digest, "compressed layer"); err != nil {
		return err
	}
	if err := checkSum(dh, diffID, "uncompressed layer (diff ID)"); err != nil {
		return err
	}
	return s.commitLayer(tmp, chainID)
}

// commitLayer makes the unpacked tmp dir visible as chainID: data flushed,
// marker written and flushed, then one atomic rename.
func (s *Store) commitLayer(tmp, chainID string) error {
	if err := syncFS(tmp); err != nil {
		return err
	}
	marker := filepath.Join(tmp, committedMarker)
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(chainID + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("layer %s: write marker: %w", chainID, err)
	}
	dst := s.layerPath(chainID)
	if err := os.Rename(tmp, dst); err != nil {
		if (errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)) && s.layerCommitted(chainID) {
			return nil // a concurrent pull of another image got there first
		}
		return fmt.Errorf("layer %s: %w", chainID, err)
	}
	return syncDir(s.layersDir)
}

func checkSum(h hash.Hash, want, what string) error {
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if got != want {
		return errdefs.InvalidArgument("%s digest mismatch: got %s, want %s", what, got, want)
	}
	return nil
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompressor picks the decompression by the stream's magic bytes rather
// than the media type, which registries and builders get wrong often enough.
func decompressor(br *bufio.Reader) (io.Reader, func(), error) {
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, errdefs.InvalidArgument("gzip layer: %v", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, errdefs.InvalidArgument("zstd layer: %v", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// ctxReader stops a copy when ctx ends, between reads.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// syncFS flushes the filesystem holding dir: one syncfs instead of an fsync
// per unpacked file.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
