package registry

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/skiffcri/skiff/config"
)

func needBusybox(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(DefaultBusybox); err != nil {
		t.Skipf("needs Debian's busybox-static: %v", err)
	}
}

// pullViaMirror resolves upstream the way skiffd's mirror config says: the
// endpoint for the upstream host, plus the repository path, plus the tag.
func pullViaMirror(t *testing.T, r *Registry, upstream string) (v1.Image, *remote.Descriptor) {
	t.Helper()
	ref, err := name.ParseReference(upstream)
	if err != nil {
		t.Fatal(err)
	}
	eps := r.Mirrors()[ref.Context().RegistryStr()]
	if len(eps) != 1 {
		t.Fatalf("%s: mirrors for %s = %v", upstream, ref.Context().RegistryStr(), eps)
	}
	ep := strings.TrimPrefix(eps[0], "http://")
	local, err := name.ParseReference(ep+"/"+ref.Context().RepositoryStr()+":"+ref.Identifier(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	desc, err := remote.Get(local, remote.WithPlatform(platform), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s as %s: %v", upstream, local, err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatalf("%s: %v", upstream, err)
	}
	return img, desc
}

func TestLocalPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"gcr.io/k8s-staging-cri-tools/test-image-latest", "gcr.io/k8s-staging-cri-tools/test-image-latest:latest"},
		{"registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"},
		{"busybox", "docker.io/library/busybox:latest"},
		{"docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"},
		{"index.docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"},
		{"bench/large:latest", "docker.io/bench/large:latest"},
		{"gcr.io/x/y@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf",
			"gcr.io/x/y@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"},
	} {
		got, err := LocalPath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("LocalPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := LocalPath("UPPER/Case"); err == nil {
		t.Error("LocalPath accepted an invalid reference")
	}
}

// TestMirrorsTOMLLoads checks the printed section is a valid skiffd config.
func TestMirrorsTOMLLoads(t *testing.T) {
	hosts := HostsOf([]string{"registry.k8s.io/pause:3.9", "busybox", "gcr.io/a/b:c"})
	if want := []string{"docker.io", "gcr.io", "index.docker.io", "registry.k8s.io"}; !reflect.DeepEqual(hosts, want) {
		t.Fatalf("HostsOf = %v, want %v", hosts, want)
	}
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(MirrorsTOML("127.0.0.1:5000", hosts)), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p, true)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, MirrorsTOML("127.0.0.1:5000", hosts))
	}
	want := map[string][]string{
		"docker.io":       {"http://127.0.0.1:5000/docker.io"},
		"index.docker.io": {"http://127.0.0.1:5000/docker.io"},
		"gcr.io":          {"http://127.0.0.1:5000/gcr.io"},
		"registry.k8s.io": {"http://127.0.0.1:5000/registry.k8s.io"},
	}
	if !reflect.DeepEqual(c.Image.Mirrors, want) {
		t.Errorf("mirrors = %v, want %v", c.Image.Mirrors, want)
	}
	if !reflect.DeepEqual(c.Image.InsecureRegistries, []string{"127.0.0.1:5000"}) {
		t.Errorf("insecure_registries = %v", c.Image.InsecureRegistries)
	}
}

// TestImagesDeterministic: two builds give the same digest for every name.
func TestImagesDeterministic(t *testing.T) {
	needBusybox(t)
	digests := func() map[string]v1.Hash {
		set, err := Images(t.Context(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]v1.Hash{}
		for _, im := range set {
			var h v1.Hash
			if im.Index != nil {
				h, err = im.Index.Digest()
			} else {
				h, err = im.Image.Digest()
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range im.Names {
				m[n] = h
			}
		}
		return m
	}
	a, b := digests(), digests()
	if !reflect.DeepEqual(a, b) {
		t.Errorf("digests differ between builds:\n%v\n%v", a, b)
	}
}

// TestServedImages pulls every name through the mirror mapping and checks
// what critest relies on.
func TestServedImages(t *testing.T) {
	needBusybox(t)
	r := Start(t)
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Errorf("Addr = %q", r.Addr())
	}
	if got, want := r.Ref("gcr.io/k8s-staging-cri-tools/test-image-latest"), r.Addr()+"/gcr.io/k8s-staging-cri-tools/test-image-latest:latest"; got != want {
		t.Errorf("Ref = %q, want %q", got, want)
	}

	configs := map[string]*v1.ConfigFile{}
	ids := map[string]v1.Hash{}
	for _, n := range r.Names() {
		img, _ := pullViaMirror(t, r, n)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		id, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		configs[n], ids[n] = cf, id
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("%s: platform %s/%s", n, cf.OS, cf.Architecture)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		minLayers := 2
		if n == VolumeImageSingle {
			minLayers = 1 // on purpose: a runtime binds rather than overlays it
		}
		if len(layers) < minLayers || len(cf.RootFS.DiffIDs) != len(layers) {
			t.Errorf("%s: %d layers, %d diff IDs; want >= %d, equal", n, len(layers), len(cf.RootFS.DiffIDs), minLayers)
		}
		if len(cf.History) < len(layers) || !cf.Created.Equal(epoch) {
			t.Errorf("%s: history %d entries, created %v", n, len(cf.History), cf.Created)
		}
	}

	const ct = "gcr.io/k8s-staging-cri-tools/"
	users := map[string]string{
		ct + "test-image-user-uid:latest":                "1002",
		ct + "test-image-user-username:latest":           "www-data",
		ct + "test-image-user-uid-group:latest":          "1003:1004",
		ct + "test-image-user-username-group:latest":     "www-data:1004",
		ct + "test-image-predefined-group:latest":        "1000",
		"registry.k8s.io/e2e-test-images/nonewprivs:1.3": "1000",
	}
	for n, u := range users {
		if got := configs[n].Config.User; got != u {
			t.Errorf("%s: User %q, want %q", n, got, u)
		}
	}
	same := [][]string{
		{ct + "test-image-tags:1", ct + "test-image-tags:2", ct + "test-image-tags:3"},
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
	}
	for _, group := range same {
		for _, n := range group[1:] {
			if ids[n] != ids[group[0]] {
				t.Errorf("%s and %s differ: %s, %s", group[0], n, ids[group[0]], ids[n])
			}
		}
	}
	distinct := []string{ct + "test-image-1:latest", ct + "test-image-2:latest", ct + "test-image-3:latest",
		ct + "test-image-tag:test", ct + "test-image-tag:all", ct + "test-image-latest:latest"}
	seen := map[v1.Hash]string{}
	for _, n := range distinct {
		if prev, ok := seen[ids[n]]; ok {
			t.Errorf("%s and %s share image ID %s", prev, n, ids[n])
		}
		seen[ids[n]] = n
	}
	if ep := configs["registry.k8s.io/pause:3.9"].Config.Entrypoint; !reflect.DeepEqual(ep, []string{"/pause"}) {
		t.Errorf("pause entrypoint %v", ep)
	}
	if cmd := configs["registry.k8s.io/e2e-test-images/busybox:1.29-2"].Config.Cmd; !reflect.DeepEqual(cmd, []string{"sh"}) {
		t.Errorf("busybox cmd %v", cmd)
	}
}

// TestIndexes: names upstream serves as lists resolve by platform, with a
// decoy manifest for another architecture; media types are as documented.
func TestIndexes(t *testing.T) {
	needBusybox(t)
	r := Start(t)
	for _, tc := range []struct {
		name     string
		mt, imgT types.MediaType
	}{
		{"registry.k8s.io/pause:3.9", types.OCIImageIndex, types.OCIManifestSchema1},
		{"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest", types.OCIImageIndex, types.OCIManifestSchema1},
		{"gcr.io/k8s-staging-cri-tools/test-image-tag:test", types.DockerManifestList, types.DockerManifestSchema2},
		{"docker.io/library/busybox:latest", types.DockerManifestList, types.DockerManifestSchema2},
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", types.DockerManifestSchema2, types.DockerManifestSchema2},
		{"gcr.io/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH + ":latest", types.OCIManifestSchema1, types.OCIManifestSchema1},
	} {
		img, desc := pullViaMirror(t, r, tc.name)
		if desc.MediaType != tc.mt {
			t.Errorf("%s: media type %s, want %s", tc.name, desc.MediaType, tc.mt)
		}
		if mt, _ := img.MediaType(); mt != tc.imgT {
			t.Errorf("%s: image media type %s, want %s", tc.name, mt, tc.imgT)
		}
		if !desc.MediaType.IsIndex() {
			continue
		}
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != runtime.GOARCH ||
			im.Manifests[1].Platform.Architecture == runtime.GOARCH {
			t.Errorf("%s: index entries %+v", tc.name, im.Manifests)
		}
	}
}

// files flattens an image's layers into path -> header.
func files(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	m := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return m
		}
		if err != nil {
			t.Fatal(err)
		}
		m[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// layerEntries lists the entries of every layer of img, upper layers'
// replacing lower ones, whiteouts not applied.
func layerEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			m[strings.TrimSuffix(h.Name, "/")] = h
		}
		rc.Close()
	}
	return m
}

// TestRootfsContents checks the files each spec's commands need.
func TestRootfsContents(t *testing.T) {
	needBusybox(t)
	set, err := Images(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]v1.Image{}
	for _, im := range set {
		if im.Image != nil {
			for _, n := range im.Names {
				byName[n] = im.Image
			}
		}
	}
	bb, err := Busybox(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	base := files(t, bb)
	for _, p := range []string{"bin/sh", "bin/id", "bin/top", "bin/httpd", "bin/pidof", "bin/hostname", "bin/ping", "bin/brctl"} {
		if h := base[p]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" || h.Mode != 0o755 {
			t.Errorf("busybox image: %s = %+v, want hard link to bin/busybox", p, h)
		}
	}
	for p, mode := range map[string]int64{"bin/busybox": 0o755, "bin/pgrep": 0o755, "bin/ipcs": 0o755,
		"etc/passwd": 0o644, "etc/group": 0o644, "tmp": 0o1777, "root": 0o700} {
		if h := base[p]; h == nil || h.Mode != mode {
			t.Errorf("busybox image: %s = %+v, want mode %o", p, h, mode)
		}
	}
	nnp := files(t, byName["registry.k8s.io/e2e-test-images/nonewprivs:1.3"])
	if h := nnp["usr/local/bin/busybox-nnp"]; h == nil || h.Mode != 0o4755 || h.Uid != 0 {
		t.Errorf("nonewprivs: busybox-nnp = %+v, want setuid root", h)
	}
	nginx := files(t, byName["registry.k8s.io/e2e-test-images/nginx:1.14-2"])
	for _, p := range []string{"usr/sbin/nginx", "usr/share/nginx/html/index.html", "etc/nginx/port", "var/run"} {
		if nginx[p] == nil {
			t.Errorf("nginx: missing %s", p)
		}
	}
}

// TestVolumeImages: the image volume images hold what their doc says,
// the upper layer's whiteout applied, and nothing to run.
func TestVolumeImages(t *testing.T) {
	needBusybox(t)
	set, err := Images(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]v1.Image{}
	for _, im := range set {
		for _, n := range im.Names {
			byName[n] = im.Image
		}
	}
	for name, want := range map[string]map[string]string{
		VolumeImage:       {"data/b.txt": "", "data/sub/c.txt": "", "data/sub/d.txt": "", "sub": "data/sub", "escape": "../../../../etc", "abs": "/etc"},
		VolumeImageSingle: {"only/file.txt": "", "only/dir/x": ""},
	} {
		img := byName[name]
		if img == nil {
			t.Fatalf("%s not in the set", name)
		}
		got := files(t, img)
		raw := layerEntries(t, img) // flattening drops symlinks that climb out
		for p, link := range want {
			h := got[p]
			if link != "" {
				h = raw[p]
			}
			if h == nil || h.Linkname != link {
				t.Errorf("%s: %s = %+v, want it (linked to %q)", name, p, h, link)
			}
		}
		for _, p := range []string{"data/a.txt", "data/.wh.a.txt", "bin/sh"} {
			if got[p] != nil {
				t.Errorf("%s: has %s", name, p)
			}
		}
	}
}

func TestSharedLibs(t *testing.T) {
	needBusybox(t)
	libs, err := sharedLibs(t.Context(), DefaultBusybox)
	if err != nil || libs != nil {
		t.Errorf("static busybox: sharedLibs = %v, %v; want none", libs, err)
	}
	libs, err = sharedLibs(t.Context(), "/bin/ls")
	if err != nil {
		t.Skipf("no dynamic /bin/ls to inspect: %v", err)
	}
	var libc, interp bool
	for _, l := range libs {
		libc = libc || strings.HasPrefix(filepath.Base(l), "libc.so")
		interp = interp || strings.HasPrefix(filepath.Base(l), "ld-")
	}
	if !libc || !interp {
		t.Errorf("/bin/ls: sharedLibs = %v; want libc and the ELF interpreter", libs)
	}
}

func TestContainerdMirrorsTOML(t *testing.T) {
	var got struct {
		Plugins map[string]struct {
			Registry struct {
				Mirrors map[string]struct{ Endpoint []string }
			}
		}
	}
	s := "version = 2\n" + ContainerdMirrorsTOML("127.0.0.1:5000", []string{"gcr.io", "index.docker.io"})
	if _, err := toml.Decode(s, &got); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	want := map[string][]string{
		"127.0.0.1:5000":  {"http://127.0.0.1:5000"},
		"gcr.io":          {"http://127.0.0.1:5000/v2/gcr.io"},
		"index.docker.io": {"http://127.0.0.1:5000/v2/docker.io"},
	}
	m := got.Plugins["io.containerd.grpc.v1.cri"].Registry.Mirrors
	if len(m) != len(want) {
		t.Fatalf("mirrors %v, want %v", m, want)
	}
	for k, v := range want {
		if !reflect.DeepEqual(m[k].Endpoint, v) {
			t.Errorf("%s: endpoint %v, want %v", k, m[k].Endpoint, v)
		}
	}
}

// TestLargeImage: the benchmark image is 3 layers, ~100 MB, deterministic,
// and served under LargeName when asked for.
func TestLargeImage(t *testing.T) {
	needBusybox(t)
	if testing.Short() {
		t.Skip("builds 100 MB")
	}
	r := StartWith(t, Options{WithLarge: true})
	img, desc := pullViaMirror(t, r, LargeName)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		total += s
	}
	if len(layers) != 3 || total < 90<<20 || total > 130<<20 {
		t.Errorf("%s: %d layers, %d bytes; want 3 layers, about 100 MB", LargeName, len(layers), total)
	}
	b, err := newBuilder(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.large(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != desc.Digest {
		t.Errorf("rebuild digest %s, served %s", d, desc.Digest)
	}
}
