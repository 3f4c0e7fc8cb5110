package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.etcd.io/bbolt"

	"github.com/skiffcri/skiff/errdefs"
)

// tarEntry describes one entry of an in-memory test tar.
type tarEntry struct {
	name     string
	typ      byte
	body     string
	linkname string
	mode     int64
	uid, gid int
}

func buildTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.linkname, Mode: mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage builds an image whose layers are the given tars (gzip'd).
func testImage(t testing.TB, cfg v1.Config, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		b := l
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.AppendLayers(img, layer)
		if err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = nodePlatform().OS, nodePlatform().Architecture
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// newRegistry serves an in-memory registry on loopback; wrap may intercept requests.
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func newTestStore(t testing.TB, o Options) *Store {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: layer unpacking creates whiteouts and sets owners")
	}
	dir := t.TempDir()
	db, err := bbolt.Open(filepath.Join(dir, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	o.Root, o.DB = dir, db
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPullMultiLayer(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{User: "1002", Cmd: []string{"/bin/sh"}},
		buildTar(t, tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\n"}, tarEntry{name: "a", body: "lower"}),
		buildTar(t, tarEntry{name: "a", body: "upper"}, tarEntry{name: ".wh.b"}),
		buildTar(t, tarEntry{name: "dir/", typ: tar.TypeDir}, tarEntry{name: "dir/.wh..wh..opq"}, tarEntry{name: "dir/f", body: "x"}),
	)
	push(t, reg+"/test/multi:v1", img)
	s := newTestStore(t, Options{})
	ctx := context.Background()

	got, err := s.Pull(ctx, reg+"/test/multi:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, _ := img.ConfigName()
	mDigest, _ := img.Digest()
	if got.ID != cfgDigest.String() {
		t.Errorf("ID = %s, want %s", got.ID, cfgDigest)
	}
	if want := reg + "/test/multi:v1"; len(got.RepoTags) != 1 || got.RepoTags[0] != want {
		t.Errorf("RepoTags = %v, want [%s]", got.RepoTags, want)
	}
	if want := reg + "/test/multi@" + mDigest.String(); len(got.RepoDigests) != 1 || got.RepoDigests[0] != want {
		t.Errorf("RepoDigests = %v, want [%s]", got.RepoDigests, want)
	}
	if got.Config.Config.User != "1002" || got.Size == 0 {
		t.Errorf("config user %q size %d", got.Config.Config.User, got.Size)
	}
	dirs, err := s.LayerDirs(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 3 {
		t.Fatalf("LayerDirs = %v", dirs)
	}
	// Top-most first.
	if b, err := os.ReadFile(filepath.Join(dirs[1], "a")); err != nil || string(b) != "upper" {
		t.Errorf("middle layer a = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[2], "a")); err != nil || string(b) != "lower" {
		t.Errorf("bottom layer a = %q, %v", b, err)
	}
	for _, ref := range []string{got.ID, strings.TrimPrefix(got.ID, "sha256:"), got.ID[7:19], reg + "/test/multi:v1", got.RepoDigests[0]} {
		if g, err := s.Get(ctx, ref); err != nil || g.ID != got.ID {
			t.Errorf("Get(%q) = %v, %v", ref, g.ID, err)
		}
	}
	if l, err := s.List(ctx, ""); err != nil || len(l) != 1 {
		t.Errorf("List = %v, %v", l, err)
	}
	u, err := s.FsInfo(ctx)
	if err != nil || u.UsedBytes == 0 || u.InodesUsed == 0 {
		t.Errorf("FsInfo = %+v, %v", u, err)
	}
	if err := s.Remove(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, got.ID); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := s.Get(ctx, got.ID); !errdefs.IsNotFound(err) {
		t.Errorf("Get after remove: %v", err)
	}
	assertEmpty(t, s)
}

// assertEmpty checks that no layers, blobs or tmp debris remain.
func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{s.layersDir, s.contentDir, s.tmpDir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s not empty: %v", d, names)
		}
	}
}

func TestPullErrors(t *testing.T) {
	reg := newRegistry(t, nil)
	s := newTestStore(t, Options{})
	ctx := context.Background()
	if _, err := s.Pull(ctx, reg+"/no/such:image", nil); !errdefs.IsNotFound(err) {
		t.Errorf("missing image: %v, want NotFound", err)
	}
	if _, err := s.Pull(ctx, "UPPER/case", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad ref: %v, want InvalidArgument", err)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	time.Sleep(2 * time.Millisecond)
	if _, err := s.Pull(tctx, reg+"/no/such:image", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired ctx: %v, want DeadlineExceeded", err)
	}
}

func TestPullSharedConcurrent(t *testing.T) {
	var mu sync.Mutex
	blobGets := 0
	reg := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				mu.Lock()
				blobGets++
				mu.Unlock()
				time.Sleep(50 * time.Millisecond) // keep the pull in flight while others join
			}
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "f", body: "1"}), buildTar(t, tarEntry{name: "g", body: "2"}))
	push(t, reg+"/shared/img:1", img)
	mu.Lock()
	blobGets = 0
	mu.Unlock()
	s := newTestStore(t, Options{})
	var wg sync.WaitGroup
	ids := make([]string, 5)
	errs := make([]error, 5)
	for i := range 5 {
		wg.Go(func() {
			img, err := s.Pull(context.Background(), reg+"/shared/img:1", nil)
			ids[i], errs[i] = img.ID, err
		})
	}
	wg.Wait()
	for i := range 5 {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("pull %d: %s %v", i, ids[i], errs[i])
		}
	}
	// One config + two layers, fetched once.
	if blobGets != 3 {
		t.Errorf("blob GETs = %d, want 3 (one shared download)", blobGets)
	}
}

func TestPullCorruptBlobLeavesNothing(t *testing.T) {
	reg := newRegistry(t, nil)
	img := testImage(t, v1.Config{}, buildTar(t, tarEntry{name: "ok", body: "fine"}), buildTar(t, tarEntry{name: "bad", body: "will be corrupted"}))
	push(t, reg+"/corrupt/img:1", img)
	ls, _ := img.Layers()
	badDigest, _ := ls[1].Digest()
	corrupting := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, badDigest.String()) && r.Method == http.MethodGet {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				b[len(b)/2] ^= 0xff
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(b)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	// Serve the same content from a registry that corrupts one blob.
	push(t, corrupting+"/corrupt/img:1", img)
	s := newTestStore(t, Options{})
	if _, err := s.Pull(context.Background(), corrupting+"/corrupt/img:1", nil); err == nil {
		t.Fatal("pull of a corrupted blob succeeded")
	}
	if l, err := s.List(context.Background(), ""); err != nil || len(l) != 0 {
		t.Errorf("List after failed pull = %v, %v", l, err)
	}
	assertEmpty(t, s)
}
