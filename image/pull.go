package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/skiffcri/skiff/errdefs"
)

// parallelLayers bounds concurrent layer downloads of one pull.
const parallelLayers = 3

// pullCall is one shared download; every Pull of the same reference with the
// same credentials waits on it.
type pullCall struct {
	done    chan struct{}
	img     Image
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Pull fetches ref (through mirrors, then upstream), verifies and unpacks it,
// and records it. Concurrent pulls of one reference share one download, which
// is cancelled only when every caller has gone away.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth) (Image, error) {
	r, err := parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	if err := ctx.Err(); err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", refString(r), err)
	}
	key := refString(r)
	if auth != nil {
		b, _ := json.Marshal(auth)
		sum := sha256.Sum256(b)
		key += "\x00" + hex.EncodeToString(sum[:])
	}

	s.pullMu.Lock()
	c, ok := s.pulls[key]
	if !ok {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &pullCall{done: make(chan struct{}), cancel: cancel}
		s.pulls[key] = c
		go func() {
			c.img, c.err = s.pull(pctx, r, auth)
			cancel()
			s.pullMu.Lock()
			if s.pulls[key] == c {
				delete(s.pulls, key)
			}
			s.pullMu.Unlock()
			close(c.done)
		}()
	}
	c.waiters++
	s.pullMu.Unlock()

	select {
	case <-c.done:
		if c.err != nil {
			return Image{}, c.err
		}
		return c.img, nil
	case <-ctx.Done():
		s.pullMu.Lock()
		c.waiters--
		if c.waiters == 0 {
			c.cancel()
			if s.pulls[key] == c {
				delete(s.pulls, key)
			}
		}
		s.pullMu.Unlock()
		return Image{}, fmt.Errorf("pull %s: %w", refString(r), ctx.Err())
	}
}

// pull tries each endpoint in turn and returns the first success.
func (s *Store) pull(ctx context.Context, r name.Reference, auth *Auth) (Image, error) {
	eps, err := s.endpoints(r)
	if err != nil {
		return Image{}, err
	}
	var errs []error
	for _, ep := range eps {
		img, err := s.pullFrom(ctx, r, ep, auth)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return Image{}, fmt.Errorf("pull %s: %w", refString(r), ctx.Err())
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.desc, err))
	}
	if len(errs) == 1 {
		return Image{}, fmt.Errorf("pull %s: %w", refString(r), errs[0])
	}
	return Image{}, fmt.Errorf("pull %s: %w", refString(r), errors.Join(errs...))
}

// resolved is a manifest chosen for this node with its verified config.
type resolved struct {
	img       v1.Image
	topDigest string   // digest the reference resolved to (index or manifest)
	blobs     [][]byte // raw index (if any), manifest, config: kept in content/
	manifest  *v1.Manifest
	rawConfig []byte
	config    ocispec.Image
	diffIDs   []string
	chainIDs  []string
}

func (s *Store) pullFrom(ctx context.Context, r name.Reference, ep endpoint, auth *Auth) (_ Image, err error) {
	an, err := auth.authenticator(ep.host, !ep.mirror)
	if err != nil {
		return Image{}, err
	}
	rt := s.secureRT
	if ep.insecure {
		rt = s.insecureRT
	}
	res, err := resolveImage(ctx, ep, an, rt)
	if err != nil {
		return Image{}, classify(err, ep)
	}

	// Hold the chain IDs so a concurrent Remove does not free layers this
	// pull is about to reference.
	s.mu.Lock()
	for _, c := range res.chainIDs {
		s.active[hexOf(c)]++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range res.chainIDs {
			h := hexOf(c)
			if s.active[h]--; s.active[h] <= 0 {
				delete(s.active, h)
			}
		}
		if err != nil {
			// A failed pull leaves no layers behind that nothing else uses.
			_ = s.gcLocked(context.WithoutCancel(ctx))
		}
	}()

	layers, err := res.img.Layers()
	if err != nil {
		return Image{}, classify(err, ep)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelLayers)
	for i, l := range layers {
		desc := res.manifest.Layers[i]
		chain := res.chainIDs[i]
		if s.layerCommitted(chain) {
			continue
		}
		g.Go(func() error {
			if err := s.fetchLayer(gctx, l, desc, res.diffIDs[i], chain); err != nil {
				return fmt.Errorf("layer %s: %w", desc.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return Image{}, ctx.Err()
		}
		return Image{}, classify(err, ep)
	}
	return s.commit(ctx, r, res)
}

// resolveImage fetches the manifest (choosing this node's platform from an
// index) and the config, verifying both digests.
func resolveImage(ctx context.Context, ep endpoint, an authn.Authenticator, rt http.RoundTripper) (*resolved, error) {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(an),
		remote.WithTransport(rt),
		remote.WithUserAgent("skiff"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 3}),
	}
	desc, err := remote.Get(ep.ref, opts...)
	if err != nil {
		return nil, err
	}
	res := &resolved{topDigest: desc.Digest.String()}
	if err := verifyBlob(desc.Manifest, desc.Digest); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := v1.ParseIndexManifest(strings.NewReader(string(desc.Manifest)))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		child, err := selectManifest(idx, nodePlatform())
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		res.blobs = append(res.blobs, desc.Manifest)
		img, err = remote.Image(ep.ref.Context().Digest(child.Digest.String()), opts...)
		if err != nil {
			return nil, err
		}
	case desc.MediaType.IsImage():
		img, err = desc.Image()
		if err != nil {
			return nil, err
		}
	default:
		return nil, errdefs.InvalidArgument("manifest %s has unsupported media type %q", desc.Digest, desc.MediaType)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	mdig, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if err := verifyBlob(raw, mdig); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	res.manifest = m
	res.blobs = append(res.blobs, raw)
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if err := verifyBlob(cfg, m.Config.Digest); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	res.rawConfig = cfg
	res.blobs = append(res.blobs, cfg)
	res.img = img
	if err := json.Unmarshal(cfg, &res.config); err != nil {
		return nil, errdefs.InvalidArgument("config %s: %v", m.Config.Digest, err)
	}
	if res.config.RootFS.Type != "layers" {
		return nil, errdefs.InvalidArgument("config %s: rootfs type %q, want \"layers\"", m.Config.Digest, res.config.RootFS.Type)
	}
	if len(res.config.RootFS.DiffIDs) != len(m.Layers) {
		return nil, errdefs.InvalidArgument("config %s lists %d diff IDs for %d layers", m.Config.Digest, len(res.config.RootFS.DiffIDs), len(m.Layers))
	}
	for i, l := range m.Layers {
		if !supportedLayer(l.MediaType) {
			return nil, errdefs.InvalidArgument("layer %s has unsupported media type %q", l.Digest, l.MediaType)
		}
		d := res.config.RootFS.DiffIDs[i]
		if err := d.Validate(); err != nil || d.Algorithm() != "sha256" {
			return nil, errdefs.InvalidArgument("config %s: bad diff ID %q", m.Config.Digest, d)
		}
		res.diffIDs = append(res.diffIDs, d.String())
	}
	res.chainIDs = chainIDs(res.diffIDs)
	return res, nil
}

func supportedLayer(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.DockerForeignLayer, types.DockerUncompressedLayer,
		types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return true
	}
	return false
}

// verifyBlob checks b against its sha256 digest.
func verifyBlob(b []byte, want v1.Hash) error {
	if want.Algorithm != "sha256" {
		return errdefs.InvalidArgument("unsupported digest algorithm %q", want.Algorithm)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want.Hex {
		return errdefs.InvalidArgument("digest mismatch: got sha256:%s, want %s", got, want)
	}
	return nil
}

// chainIDs computes the OCI chain IDs of a layer stack:
// chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)).
func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

func hexOf(d string) string { return strings.TrimPrefix(d, "sha256:") }

// nodePlatform is the platform an index is resolved for.
func nodePlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7" // what every arm node kubelet runs on
	}
	return p
}

// selectManifest picks the manifest of an index for want: OS and
// architecture must match; an exact variant beats an unspecified one, and for
// arm64 "v8" and "" are the same. Attestation manifests (unknown/unknown) and
// non-image entries never match.
func selectManifest(idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	best, bestScore := -1, 0
	for i, d := range idx.Manifests {
		if !d.MediaType.IsImage() || d.Platform == nil {
			continue
		}
		p := d.Platform
		if p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		score := 0
		gv, wv := p.Variant, want.Variant
		if want.Architecture == "arm64" {
			gv, wv = strings.TrimPrefix(gv, "v8"), strings.TrimPrefix(wv, "v8")
		}
		switch {
		case gv == wv:
			score = 3
		case gv == "":
			score = 2
		case wv == "":
			score = 1
		default:
			continue
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		var have []string
		for _, d := range idx.Manifests {
			if d.Platform != nil {
				have = append(have, d.Platform.String())
			}
		}
		return v1.Descriptor{}, errdefs.NotFound("no manifest for platform %s (index has %s)", want.String(), strings.Join(have, ", "))
	}
	return idx.Manifests[best], nil
}

// classify gives a registry error its kind: missing images are NotFound,
// credential problems say which registry refused them.
func classify(err error, ep endpoint) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return errdefs.NotFound("%v", err)
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden ||
			hasCode(te, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			return fmt.Errorf("registry %s refused credentials or access for %s: %w", ep.host, ep.ref.Context(), err)
		}
	}
	return err
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if slices.Contains(codes, d.Code) {
			return true
		}
	}
	return false
}

// commit writes the content blobs and the image record and moves r's tag to
// the image. It runs under s.mu so GC never sees a half-written image.
func (s *Store) commit(ctx context.Context, r name.Reference, res *resolved) (Image, error) {
	var size uint64
	for _, l := range res.manifest.Layers {
		size += uint64(l.Size)
	}
	id := res.manifest.Config.Digest.String()
	repo := normalizedRepo(r.Context())
	digestRef := repo + "@" + res.topDigest
	var tagRef string
	if t, ok := r.(name.Tag); ok {
		tagRef = repo + ":" + t.TagStr()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Blobs are written under mu: GC would free them before the record exists.
	var blobs []string
	for _, b := range res.blobs {
		d, err := s.writeBlob(b)
		if err != nil {
			return Image{}, fmt.Errorf("record image %s: %w", id, err)
		}
		blobs = append(blobs, d)
	}
	var rec *record
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		rec, err = getRecord(tx, id)
		if errdefs.IsNotFound(err) {
			rec = &record{ID: id}
		} else if err != nil {
			return err
		}
		rec.ManifestDigest = res.topDigest
		rec.Config = res.rawConfig
		rec.DiffIDs = res.diffIDs
		rec.ChainIDs = res.chainIDs
		rec.Size = size
		rec.Pulled = time.Now().UTC()
		for _, b := range blobs {
			if !slices.Contains(rec.Blobs, b) {
				rec.Blobs = append(rec.Blobs, b)
			}
		}
		refs := tx.Bucket(refsBucket)
		for _, ref := range []string{tagRef, digestRef} {
			if ref == "" {
				continue
			}
			if old := refs.Get([]byte(ref)); old != nil && string(old) != id {
				// The tag moves: the old image keeps its digests, like containerd.
				prev, err := getRecord(tx, string(old))
				if err == nil {
					prev.RepoTags = slices.DeleteFunc(prev.RepoTags, func(t string) bool { return t == ref })
					prev.RepoDigests = slices.DeleteFunc(prev.RepoDigests, func(t string) bool { return t == ref })
					if len(prev.RepoTags)+len(prev.RepoDigests) == 0 {
						err = deleteRecord(tx, prev)
					} else {
						err = putRecord(tx, prev)
					}
				} else if errdefs.IsNotFound(err) {
					err = nil
				}
				if err != nil {
					return err
				}
			}
			if err := refs.Put([]byte(ref), []byte(id)); err != nil {
				return err
			}
		}
		if tagRef != "" && !slices.Contains(rec.RepoTags, tagRef) {
			rec.RepoTags = append(rec.RepoTags, tagRef)
		}
		if !slices.Contains(rec.RepoDigests, digestRef) {
			rec.RepoDigests = append(rec.RepoDigests, digestRef)
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		return Image{}, fmt.Errorf("record image %s: %w", id, err)
	}
	// Layers and blobs of an image that lost its last reference go now.
	if err := s.gcLocked(ctx); err != nil {
		return Image{}, fmt.Errorf("record image %s: free unused content: %w", id, err)
	}
	return rec.image()
}

// writeBlob stores b under its digest (atomically, fsync'd) and returns the digest.
func (s *Store) writeBlob(b []byte) (string, error) {
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	p := filepath.Join(s.contentDir, h)
	if _, err := os.Stat(p); err == nil {
		return "sha256:" + h, nil
	}
	f, err := os.CreateTemp(s.tmpDir, "blob-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return "", err
	}
	return "sha256:" + h, nil
}
