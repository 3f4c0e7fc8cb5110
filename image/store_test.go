package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/skiffcri/skiff/errdefs"
)

func TestPullMirrors(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "m", body: "mirrored"}))
	push(t, reg+"/pre/team/app:v1", img)
	push(t, reg+"/library/busybox:latest", img)
	s := newTestStore(t, Options{Mirrors: map[string][]string{
		// A dead mirror first: the pull must move on to the next one.
		"registry.example.invalid": {"http://127.0.0.1:1", "http://" + reg + "/pre"},
		"docker.io":                {"http://" + reg},
	}})
	ctx := context.Background()
	got, err := s.Pull(ctx, "registry.example.invalid/team/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.RepoTags) != 1 || got.RepoTags[0] != "registry.example.invalid/team/app:v1" {
		t.Errorf("RepoTags = %v", got.RepoTags)
	}
	hub, err := s.Pull(ctx, "busybox", nil)
	if err != nil {
		t.Fatal(err)
	}
	if hub.ID != got.ID {
		t.Errorf("same image, different IDs: %s %s", hub.ID, got.ID)
	}
	list, err := s.List(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	tags := strings.Join(list[0].RepoTags, ",")
	if tags != "registry.example.invalid/team/app:v1,docker.io/library/busybox:latest" {
		t.Errorf("RepoTags = %s", tags)
	}
	if _, err := s.Get(ctx, "docker.io/library/busybox:latest"); err != nil {
		t.Error(err)
	}
	// Missing everywhere: NotFound from the mirror even though upstream is unreachable.
	if _, err := s.Pull(ctx, "registry.example.invalid/team/none:v1", nil); !errdefs.IsNotFound(err) {
		t.Errorf("missing image via mirrors: %v, want NotFound", err)
	}
}

func TestPullIndexSelectsPlatform(t *testing.T) {
	reg := newRegistry(t, nil)
	mine := testImage(t, v1.Config{Cmd: []string{"mine"}}, buildTar(t, tarEntry{name: "mine", body: "1"}))
	other := testImage(t, v1.Config{Cmd: []string{"other"}}, buildTar(t, tarEntry{name: "other", body: "2"}))
	p := nodePlatform()
	otherArch := "s390x"
	if p.Architecture == otherArch {
		otherArch = "ppc64le"
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &p}},
	)
	r, _ := name.ParseReference(reg + "/multi/arch:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t, Options{})
	got, err := s.Pull(context.Background(), reg+"/multi/arch:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := mine.ConfigName()
	if got.ID != want.String() {
		t.Errorf("ID = %s, want %s (this platform's image)", got.ID, want)
	}
	idxDigest, _ := idx.Digest()
	if got.ManifestDigest != idxDigest.String() || got.RepoDigests[0] != reg+"/multi/arch@"+idxDigest.String() {
		t.Errorf("digests = %s %v, want index digest %s", got.ManifestDigest, got.RepoDigests, idxDigest)
	}
	// Pull by the index digest: no tag, only the digest reference.
	if err := s.Remove(context.Background(), got.ID); err != nil {
		t.Fatal(err)
	}
	byDigest, err := s.Pull(context.Background(), reg+"/multi/arch@"+idxDigest.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(byDigest.RepoTags) != 0 || len(byDigest.RepoDigests) != 1 {
		t.Errorf("pull by digest: tags %v digests %v", byDigest.RepoTags, byDigest.RepoDigests)
	}
}

func TestPullAuth(t *testing.T) {
	var locked atomic.Bool // set once the test image is pushed
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if locked.Load() {
				u, p, ok := r.BasicAuth()
				if !(ok && u == "user" && p == "pass") && r.Header.Get("Authorization") != "Bearer regtoken" {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "secret", body: "s"}))
	push(t, reg+"/private/img:1", img)
	locked.Store(true)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	ref := reg + "/private/img:1"
	_, err := s.Pull(ctx, ref, nil)
	if err == nil || !strings.Contains(err.Error(), "registry "+reg) {
		t.Errorf("anonymous pull: %v, want an auth error naming the registry", err)
	}
	for _, a := range []*Auth{
		{Username: "user", Password: "pass"},
		{Auth: base64.StdEncoding.EncodeToString([]byte("user:pass")), ServerAddress: reg},
		{RegistryToken: "regtoken"},
	} {
		if _, err := s.Pull(ctx, ref, a); err != nil {
			t.Errorf("pull with %+v: %v", *a, err)
		}
	}
	if _, err := s.Pull(ctx, ref, &Auth{Username: "user", Password: "wrong"}); err == nil {
		t.Error("pull with a wrong password succeeded")
	}
}

func TestUseReleaseAndRemove(t *testing.T) {
	reg := newRegistry(t, nil)
	base := buildTar(t, tarEntry{name: "base", body: "b"})
	a := testImage(t, v1.Config{Cmd: []string{"a"}}, base, buildTar(t, tarEntry{name: "a", body: "a"}))
	b := testImage(t, v1.Config{Cmd: []string{"b"}}, base, buildTar(t, tarEntry{name: "b", body: "b"}))
	push(t, reg+"/img/a:1", a)
	push(t, reg+"/img/b:1", b)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	ia, err := s.Pull(ctx, reg+"/img/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := s.Pull(ctx, reg+"/img/b:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	layers := func() int {
		ents, err := os.ReadDir(s.layersDir)
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	if n := layers(); n != 3 {
		t.Fatalf("%d layer dirs, want 3 (shared base)", n)
	}
	if err := s.Use(ctx, ia.ID, "ctr1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(ctx, "sha256:"+strings.Repeat("0", 64), "ctr1"); !errdefs.IsNotFound(err) {
		t.Errorf("Use of a missing image: %v", err)
	}
	dirsBefore, err := s.LayerDirs(ctx, ia.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, ia.ID); err != nil {
		t.Fatal(err)
	}
	if n := layers(); n != 3 {
		t.Errorf("%d layer dirs after removing a held image, want 3", n)
	}
	dirsAfter, err := s.LayerDirs(ctx, ia.ID)
	if err != nil || strings.Join(dirsAfter, ":") != strings.Join(dirsBefore, ":") {
		t.Errorf("LayerDirs of a removed but held image = %v, %v", dirsAfter, err)
	}
	if err := s.Release(ctx, ia.ID, "ctr1"); err != nil {
		t.Fatal(err)
	}
	if n := layers(); n != 2 {
		t.Errorf("%d layer dirs after release, want 2 (b's)", n)
	}
	if err := s.Release(ctx, ia.ID, "ctr1"); err != nil {
		t.Errorf("second release: %v", err)
	}
	// Remove by tag: the only tag, so the image goes (its digest ref too).
	if err := s.Remove(ctx, reg+"/img/b:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ib.ID); err == nil {
		// The digest reference keeps it: remove that too.
		if err := s.Remove(ctx, ib.RepoDigests[0]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, ib.ID); !errdefs.IsNotFound(err) {
		t.Errorf("image b after removing its references: %v", err)
	}
	assertEmpty(t, s)
}

func TestTagMovesAndRemoveByTag(t *testing.T) {
	reg := newRegistry(t, nil)
	v1img := testImage(t, v1.Config{Cmd: []string{"1"}}, buildTar(t, tarEntry{name: "v", body: "1"}))
	v2img := testImage(t, v1.Config{Cmd: []string{"2"}}, buildTar(t, tarEntry{name: "v", body: "2"}))
	s := newTestStore(t, Options{})
	ctx := context.Background()
	push(t, reg+"/app:latest", v1img)
	first, err := s.Pull(ctx, reg+"/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, reg+"/app:other", nil); !errdefs.IsNotFound(err) {
		t.Errorf("missing tag: %v", err)
	}
	push(t, reg+"/app:other", v1img)
	if _, err := s.Pull(ctx, reg+"/app:other", nil); err != nil {
		t.Fatal(err)
	}
	push(t, reg+"/app:latest", v2img)
	second, err := s.Pull(ctx, reg+"/app:latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.Get(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(old.RepoTags, ",") != reg+"/app:other" {
		t.Errorf("old image tags = %v, want only :other", old.RepoTags)
	}
	if g, err := s.Get(ctx, reg+"/app"); err != nil || g.ID != second.ID {
		t.Errorf("latest -> %s, %v; want %s", g.ID, err, second.ID)
	}
	if err := s.Remove(ctx, reg+"/app:other"); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Get(ctx, first.ID); err != nil || len(g.RepoTags) != 0 || len(g.RepoDigests) != 1 {
		t.Errorf("after removing its last tag the image keeps its digest: %+v, %v", g.RepoTags, err)
	}
	if err := s.Remove(ctx, reg+"/app:nope"); !errdefs.IsNotFound(err) {
		t.Errorf("remove of a missing tag: %v", err)
	}
	if l, _ := s.List(ctx, reg+"/app:latest"); len(l) != 1 || l[0].ID != second.ID {
		t.Errorf("List with filter = %v", l)
	}
	if l, _ := s.List(ctx, "nothing:here"); len(l) != 0 {
		t.Errorf("List with unmatched filter = %v", l)
	}
}

func TestPullStall(t *testing.T) {
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "f", body: "x"}))
	ls, _ := img.Layers()
	layerDigest, _ := ls[0].Digest()
	size, _ := ls[0].Size()
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layerDigest.String()) {
				// Send one byte, then nothing until the client gives up.
				w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
				w.WriteHeader(http.StatusOK)
				w.Write([]byte{0x1f})
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, reg+"/stall/img:1", img)
	s := newTestStore(t, Options{StallTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.Pull(ctx, reg+"/stall/img:1", nil)
	if !errors.Is(err, errStalled) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("stalled pull: %v, want a stall error", err)
	}
	if ctx.Err() != nil {
		t.Error("the stall timeout did not end the pull")
	}
	assertEmpty(t, s)
}

func TestNewCleansDebris(t *testing.T) {
	s := newTestStore(t, Options{})
	// An uncommitted layer (crash before the marker) and tmp leftovers.
	if err := os.MkdirAll(filepath.Join(s.layersDir, strings.Repeat("a", 64), "fs", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.tmpDir, "layer-1", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.contentDir, strings.Repeat("b", 64)), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := New(context.Background(), Options{Root: s.root, DB: s.db})
	if err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s2)
	if _, err := New(context.Background(), Options{Root: s.root, DB: s.db, Mirrors: map[string][]string{"docker.io": {"ftp://x"}}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad mirror: %v", err)
	}
}

func TestFsInfoCountsOwnDirs(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "d/f", body: strings.Repeat("x", 10000)}))
	push(t, reg+"/fs/img:1", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	empty, err := s.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, reg+"/fs/img:1", nil); err != nil {
		t.Fatal(err)
	}
	full, err := s.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if full.UsedBytes < empty.UsedBytes+10000 || full.InodesUsed < empty.InodesUsed+4 {
		t.Errorf("FsInfo empty %+v full %+v", empty, full)
	}
	if full.Mountpoint != s.layersDir {
		t.Errorf("Mountpoint = %s", full.Mountpoint)
	}
}

func TestPullCompressions(t *testing.T) {
	reg := newRegistry(t, nil)
	gz, err := tarball.LayerFromOpener(opener(buildTar(t, tarEntry{name: "gz", body: "gzip"})), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	zs, err := tarball.LayerFromOpener(opener(buildTar(t, tarEntry{name: "zs", body: "zstd"})), tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	plain := static.NewLayer(buildTar(t, tarEntry{name: "plain", body: "tar"}), types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), gz, zs, plain)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if mt, _ := zs.MediaType(); mt != types.OCILayerZStd {
		t.Fatalf("zstd layer media type %s", mt)
	}
	if rc, err := zs.Compressed(); err == nil {
		head := make([]byte, 4)
		io.ReadFull(rc, head)
		rc.Close()
		if !bytes.Equal(head, zstdMagic) {
			t.Fatalf("zstd layer starts with %x", head)
		}
	}
	push(t, reg+"/comp/img:1", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	got, err := s.Pull(ctx, reg+"/comp/img:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LayerDirs(ctx, got.ID)
	if err != nil || len(dirs) != 3 {
		t.Fatalf("LayerDirs = %v, %v", dirs, err)
	}
	mustContent(t, filepath.Join(dirs[2], "gz"), "gzip")
	mustContent(t, filepath.Join(dirs[1], "zs"), "zstd")
	mustContent(t, filepath.Join(dirs[0], "plain"), "tar")
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func TestRestartKeepsImages(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{User: "www-data"}, buildTar(t, tarEntry{name: "f", body: "x"}))
	push(t, reg+"/keep/img:1", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	got, err := s.Pull(ctx, reg+"/keep/img:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(ctx, Options{Root: s.root, DB: s.db})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s2.Get(ctx, reg+"/keep/img:1")
	if err != nil || again.ID != got.ID || again.Config.Config.User != "www-data" {
		t.Fatalf("after restart: %+v, %v", again, err)
	}
	dirs, err := s2.LayerDirs(ctx, got.ID)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("LayerDirs after restart = %v, %v", dirs, err)
	}
	mustContent(t, filepath.Join(dirs[0], "f"), "x")
}

func TestPullConcurrentSharedBaseAndCancel(t *testing.T) {
	var slow atomic.Bool
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow.Load() && strings.Contains(r.URL.Path, "/blobs/") {
				time.Sleep(100 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	})
	base := buildTar(t, tarEntry{name: "base", body: strings.Repeat("b", 4096)})
	a := testImage(t, v1.Config{Cmd: []string{"a"}}, base, buildTar(t, tarEntry{name: "a", body: "a"}))
	b := testImage(t, v1.Config{Cmd: []string{"b"}}, base, buildTar(t, tarEntry{name: "b", body: "b"}))
	push(t, reg+"/cc/a:1", a)
	push(t, reg+"/cc/b:1", b)
	slow.Store(true)
	s := newTestStore(t, Options{})
	ctx := context.Background()

	// A caller that gives up must not cancel the download for one that waits.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var errShort, errA, errB error
	wg.Go(func() { _, errShort = s.Pull(short, reg+"/cc/a:1", nil) })
	wg.Go(func() { _, errA = s.Pull(ctx, reg+"/cc/a:1", nil) })
	wg.Go(func() { _, errB = s.Pull(ctx, reg+"/cc/b:1", nil) })
	wg.Wait()
	if !errors.Is(errShort, context.DeadlineExceeded) {
		t.Errorf("short pull: %v, want DeadlineExceeded", errShort)
	}
	if errA != nil || errB != nil {
		t.Fatalf("pulls: %v, %v", errA, errB)
	}
	for _, ref := range []string{reg + "/cc/a:1", reg + "/cc/b:1"} {
		img, err := s.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.LayerDirs(ctx, img.ID); err != nil {
			t.Error(err)
		}
	}
	ents, _ := os.ReadDir(s.layersDir)
	if len(ents) != 3 {
		t.Errorf("%d layers, want 3", len(ents))
	}
}

func TestRemoveHexLookingTag(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "f", body: "x"}))
	// A repository whose name looks like an ID prefix.
	push(t, reg+"/deadbeefcafe:1", img)
	push(t, reg+"/deadbeefcafe:2", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	for _, tag := range []string{"1", "2"} {
		if _, err := s.Pull(ctx, reg+"/deadbeefcafe:"+tag, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(ctx, reg+"/deadbeefcafe:1"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, reg+"/deadbeefcafe:2")
	if err != nil || len(got.RepoTags) != 1 {
		t.Errorf("removing one tag took more: %+v, %v", got.RepoTags, err)
	}
}

func TestConcurrentRemove(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "f", body: "x"}), buildTar(t, tarEntry{name: "g", body: "y"}))
	push(t, reg+"/rm/img:1", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	got, err := s.Pull(ctx, reg+"/rm/img:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		ref := got.ID
		if i%2 == 1 {
			ref = got.ID[7:]
		}
		wg.Go(func() { errs[i] = s.Remove(ctx, ref) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("remove %d: %v", i, err)
		}
	}
	assertEmpty(t, s)
}
