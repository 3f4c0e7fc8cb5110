// Package image is Skiff's image store: it pulls images from registries
// (through mirrors, with auth), verifies every blob, unpacks layers once per
// chain ID into overlay-ready directories, and keeps image records and refs in
// the daemon's bbolt database so a restarted daemon sees the same images.
//
// On disk, under Options.Root:
//
//	content/blobs/sha256/<hex>   manifests, indexes and configs of stored images
//	layers/<chainID-hex>/fs      one unpacked layer (overlay whiteouts applied)
//	layers/<chainID-hex>/committed  written and fsync'd before the directory is renamed in
//	tmp/                         work space; emptied at start
//
// Compressed layer blobs are not kept: a layer is decompressed and unpacked
// while it streams, so its unpacked directory is the only copy.
package image

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"

	"github.com/skiffcri/skiff/errdefs"
)

var (
	imagesBucket  = []byte("images")     // image ID -> record (JSON)
	refsBucket    = []byte("image-refs") // normalized tag or digest ref -> image ID
	holdersBucket = []byte("leases")     // holderID "\x00" imageID -> holder (JSON)
)

// DefaultStallTimeout is used when Options.StallTimeout is zero.
const DefaultStallTimeout = time.Minute

// Options configure a Store.
type Options struct {
	// Root is skiffd's root dir; the store owns Root/content, Root/layers and Root/tmp.
	Root string
	// DB is the shared meta.db; the store keeps its own buckets in it.
	DB *bbolt.DB
	// Mirrors maps an upstream registry host ("docker.io", "registry.k8s.io")
	// to endpoints "scheme://host[:port][/path-prefix]" tried in order before it.
	Mirrors map[string][]string
	// InsecureRegistries are hosts (host[:port]) that may be reached over
	// plain http or TLS without certificate verification.
	InsecureRegistries []string
	// StallTimeout aborts a download that makes no progress this long (0 = DefaultStallTimeout).
	StallTimeout time.Duration
	// MaxLayerSize bounds the unpacked bytes of one layer; 0 is unlimited.
	MaxLayerSize int64
}

// Auth is the registry credential the kubelet passes with a pull (CRI AuthConfig).
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 "user:pass"
	ServerAddress string
	IdentityToken string
	RegistryToken string
}

// Image is what the CRI edge reports about a stored image.
type Image struct {
	ID             string   // "sha256:<config digest>"
	RepoTags       []string // "docker.io/library/busybox:latest"
	RepoDigests    []string // "docker.io/library/busybox@sha256:<manifest digest>"
	Size           uint64   // sum of compressed layer sizes, as containerd reports
	Config         ocispec.Image
	ManifestDigest string
	Pinned         bool
}

// FsUsage is the space the store's directories use.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// record is the persisted form of an image.
type record struct {
	ID             string          `json:"id"`
	RepoTags       []string        `json:"repoTags,omitempty"`
	RepoDigests    []string        `json:"repoDigests,omitempty"`
	ManifestDigest string          `json:"manifestDigest"`
	Config         json.RawMessage `json:"config"`
	DiffIDs        []string        `json:"diffIDs"`
	ChainIDs       []string        `json:"chainIDs"`
	Size           uint64          `json:"size"`
	Blobs          []string        `json:"blobs"` // content blobs (manifests, index, config) this image keeps
	Pinned         bool            `json:"pinned,omitempty"`
	Pulled         time.Time       `json:"pulled"`
}

// holder is the persisted form of a Use: the layers a container keeps alive,
// recorded by chain ID so they survive the removal of the image itself.
type holder struct {
	ImageID  string   `json:"imageId"`
	ChainIDs []string `json:"chainIDs"`
}

// Store pulls, records and removes images. It is safe for concurrent use.
type Store struct {
	root       string
	contentDir string
	layersDir  string
	tmpDir     string
	db         *bbolt.DB
	mirrors    map[string][]endpointSpec
	insecure   map[string]bool
	stall      time.Duration
	maxLayer   int64
	secureRT   http.RoundTripper
	insecureRT http.RoundTripper

	// mu serialises changes to records and the garbage collection of blobs
	// and layers, so a layer a pull is about to reference is never freed.
	mu sync.Mutex
	// active counts in-flight pulls per chain ID (guarded by mu): GC skips them.
	active map[string]int

	pullMu sync.Mutex
	pulls  map[string]*pullCall

	usageMu sync.Mutex
	usage   map[string]usage // committed layer hex -> its disk usage (layers are immutable)
}

// New opens the store, creates its directories and buckets, and removes what
// an interrupted run left behind (tmp dirs, uncommitted layers, unused blobs).
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Root == "" || o.DB == nil {
		return nil, errdefs.InvalidArgument("image store: root and db are required")
	}
	if o.MaxLayerSize < 0 {
		return nil, errdefs.InvalidArgument("image store: negative max layer size %d", o.MaxLayerSize)
	}
	s := &Store{
		root:       o.Root,
		contentDir: filepath.Join(o.Root, "content", "blobs", "sha256"),
		layersDir:  filepath.Join(o.Root, "layers"),
		tmpDir:     filepath.Join(o.Root, "tmp"),
		db:         o.DB,
		insecure:   map[string]bool{},
		stall:      o.StallTimeout,
		maxLayer:   o.MaxLayerSize,
		active:     map[string]int{},
		pulls:      map[string]*pullCall{},
		usage:      map[string]usage{},
	}
	if s.stall <= 0 {
		s.stall = DefaultStallTimeout
	}
	for _, h := range o.InsecureRegistries {
		s.insecure[normalizeHost(h)] = true
	}
	m, err := parseMirrors(o.Mirrors)
	if err != nil {
		return nil, err
	}
	s.mirrors = m
	s.secureRT, s.insecureRT = newTransports(s.stall)

	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("image store: clean tmp: %w", err)
	}
	for _, d := range []string{s.contentDir, s.layersDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// The layers dir is read by overlay mounts in user namespaces-less
	// containers only as root, but lowerdirs must be traversable.
	if err := os.Chmod(s.layersDir, 0o711); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{imagesBucket, refsBucket, holdersBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image store: create buckets: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gcLocked(ctx); err != nil {
		return nil, fmt.Errorf("image store: initial cleanup: %w", err)
	}
	return s, nil
}

// Get resolves ref to a stored image. ref may be a full ID ("sha256:<hex>"),
// a bare hex ID, a unique ID prefix of at least 12 hex digits, a tag
// reference (normalized, so "busybox" is "docker.io/library/busybox:latest")
// or a digest reference "name@sha256:<manifest digest>".
func (s *Store) Get(ctx context.Context, ref string) (Image, error) {
	var rec *record
	err := s.db.View(func(tx *bbolt.Tx) error {
		r, err := resolve(tx, ref)
		rec = r
		return err
	})
	if err != nil {
		return Image{}, err
	}
	return rec.image()
}

// List returns every image, or with a non-empty filter only the image the
// filter resolves to as in Get (none when it resolves to nothing).
func (s *Store) List(ctx context.Context, filter string) ([]Image, error) {
	if filter != "" {
		img, err := s.Get(ctx, filter)
		if errdefs.IsNotFound(err) {
			return []Image{}, nil
		}
		if err != nil {
			return nil, err
		}
		return []Image{img}, nil
	}
	var recs []*record
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(imagesBucket).ForEach(func(k, v []byte) error {
			r := new(record)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("image record %s: %w", k, err)
			}
			recs = append(recs, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(recs))
	for _, r := range recs {
		img, err := r.image()
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Remove removes what ref names. An ID (any form Get accepts for IDs)
// removes the image with all its tags and digests; a tag or digest reference
// removes only that reference, and the image once no reference remains.
// Removing an ID that is already gone succeeds. Blobs and layers that no
// remaining image, holder or running pull uses are freed.
func (s *Store) Remove(ctx context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := looksLikeID(ref)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		rec, viaID, err := resolveRef(tx, ref)
		if err != nil {
			return err
		}
		byID = viaID
		if !byID {
			key, err := refKey(ref)
			if err != nil {
				return err
			}
			if err := tx.Bucket(refsBucket).Delete([]byte(key)); err != nil {
				return err
			}
			rec.RepoTags = slices.DeleteFunc(rec.RepoTags, func(t string) bool { return t == key })
			rec.RepoDigests = slices.DeleteFunc(rec.RepoDigests, func(t string) bool { return t == key })
			if len(rec.RepoTags)+len(rec.RepoDigests) > 0 {
				return putRecord(tx, rec)
			}
		}
		return deleteRecord(tx, rec)
	})
	if err != nil {
		if byID && errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("remove image %q: %w", ref, err)
	}
	if err := s.gcLocked(ctx); err != nil {
		return fmt.Errorf("remove image %q: free unused content: %w", ref, err)
	}
	return nil
}

// Use records that holderID (a container) uses the image, so the image's
// layers are not freed even if the image itself is removed.
func (s *Store) Use(ctx context.Context, imageID, holderID string) error {
	if holderID == "" {
		return errdefs.InvalidArgument("image use: empty holder ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Update(func(tx *bbolt.Tx) error {
		rec, err := resolve(tx, imageID)
		if err != nil {
			return fmt.Errorf("use image %q by %s: %w", imageID, holderID, err)
		}
		b, err := json.Marshal(holder{ImageID: rec.ID, ChainIDs: rec.ChainIDs})
		if err != nil {
			return err
		}
		return tx.Bucket(holdersBucket).Put(holderKey(holderID, rec.ID), b)
	})
}

// Release drops holderID's use of the image and frees layers nothing else
// uses. Releasing a use that does not exist succeeds.
func (s *Store) Release(ctx context.Context, imageID, holderID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := normalizeID(imageID)
	// While the image itself is there its layers stay, whoever holds it:
	// only the release of an image removed in use can free anything, and
	// only then is the store collected (a walk of every image, holder,
	// blob and layer).
	imageGone := false
	err := s.db.Update(func(tx *bbolt.Tx) error {
		imageGone = tx.Bucket(imagesBucket).Get([]byte(id)) == nil
		return tx.Bucket(holdersBucket).Delete(holderKey(holderID, id))
	})
	if err != nil {
		return fmt.Errorf("release image %q by %s: %w", imageID, holderID, err)
	}
	if !imageGone {
		return nil
	}
	if err := s.gcLocked(ctx); err != nil {
		return fmt.Errorf("release image %q by %s: free unused content: %w", imageID, holderID, err)
	}
	return nil
}

// LayerDirs returns the unpacked layer directories of an image, top-most
// first, ready to be joined with ":" for overlay's lowerdir. An image that was
// removed while a holder still uses it is still answered from the holder.
func (s *Store) LayerDirs(ctx context.Context, imageID string) ([]string, error) {
	var chains []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		rec, err := resolve(tx, imageID)
		if err == nil {
			chains = rec.ChainIDs
			return nil
		}
		if !errdefs.IsNotFound(err) {
			return err
		}
		id := normalizeID(imageID)
		c := tx.Bucket(holdersBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !strings.HasSuffix(string(k), "\x00"+id) {
				continue
			}
			var h holder
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("holder record %q: %w", k, err)
			}
			chains = h.ChainIDs
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("layer dirs of %q: %w", imageID, err)
	}
	dirs := make([]string, 0, len(chains))
	for i := len(chains) - 1; i >= 0; i-- {
		l := s.layerPath(chains[i])
		if _, err := os.Stat(filepath.Join(l, committedMarker)); err != nil {
			return nil, errdefs.FailedPrecondition("layer dirs of %q: layer %s is not committed: %v", imageID, chains[i], err)
		}
		dirs = append(dirs, filepath.Join(l, "fs"))
	}
	return dirs, nil
}
