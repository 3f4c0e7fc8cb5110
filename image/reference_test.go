package image

import (
	"errors"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/skiffcri/skiff/errdefs"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestRefKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"docker.io/busybox", "docker.io/library/busybox:latest"},
		{"docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest"},
		{"registry-1.docker.io/library/busybox", "docker.io/library/busybox:latest"},
		{"user/repo", "docker.io/user/repo:latest"},
		{"gcr.io/k8s-staging-cri-tools/test-image-latest", "gcr.io/k8s-staging-cri-tools/test-image-latest:latest"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"},
		{"localhost:5000/a/b/c:v1", "localhost:5000/a/b/c:v1"},
		{"busybox@" + testDigest, "docker.io/library/busybox@" + testDigest},
		{"busybox:1.36@" + testDigest, "docker.io/library/busybox@" + testDigest},
	} {
		got, err := refKey(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("refKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a:b:c", "busybox@sha256:short", "sha256:" + testDigest[7:]} {
		if got, err := refKey(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("refKey(%q) = %q, %v; want InvalidArgument", bad, got, err)
		}
	}
}

func TestLooksLikeID(t *testing.T) {
	for in, want := range map[string]bool{
		testDigest:         true,
		testDigest[7:]:     true,
		testDigest[7:19]:   true,
		testDigest[7:18]:   false, // 11 hex digits
		"busybox":          false,
		"sha256:0123":      false,
		"0123456789abcdeg": false,
	} {
		if got := looksLikeID(in); got != want {
			t.Errorf("looksLikeID(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestUserFromConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		uid  int64
		hasU bool
		name string
	}{
		{"", 0, false, ""},
		{"1002", 1002, true, ""},
		{"0", 0, true, ""},
		{"www-data", 0, false, "www-data"},
		{"1002:1003", 1002, true, ""},
		{"name:grp", 0, false, "name"},
		{":1003", 0, false, ""},
	} {
		uid, name := UserFromConfig(tc.in)
		if (uid != nil) != tc.hasU || (uid != nil && *uid != tc.uid) || name != tc.name {
			t.Errorf("UserFromConfig(%q) = %v, %q", tc.in, uid, name)
		}
	}
}

func TestParseMirrors(t *testing.T) {
	m, err := parseMirrors(map[string][]string{
		"docker.io":       {"http://127.0.0.1:5000", "https://mirror.example.com/hub/"},
		"registry.k8s.io": {"https://m.example.com:8443/k8s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]endpointSpec{
		"docker.io":       {{host: "127.0.0.1:5000", plain: true}, {host: "mirror.example.com", prefix: "hub"}},
		"registry.k8s.io": {{host: "m.example.com:8443", prefix: "k8s"}},
	}
	for k, v := range want {
		if len(m[k]) != len(v) {
			t.Fatalf("%s: %v", k, m[k])
		}
		for i := range v {
			if m[k][i] != v[i] {
				t.Errorf("%s[%d] = %+v, want %+v", k, i, m[k][i], v[i])
			}
		}
	}
	for _, bad := range []string{"ftp://x", "127.0.0.1:5000", "http://", "http://u:p@host", "http://host/UPPER"} {
		if _, err := parseMirrors(map[string][]string{"docker.io": {bad}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("mirror %q: %v, want InvalidArgument", bad, err)
		}
	}
}

func TestEndpoints(t *testing.T) {
	m, _ := parseMirrors(map[string][]string{"docker.io": {"http://127.0.0.1:5000/pre"}})
	s := &Store{mirrors: m, insecure: map[string]bool{"docker.io": true}}
	r, _ := parseRef("busybox:1")
	eps, err := s.endpoints(r)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range eps {
		got = append(got, e.ref.Context().Scheme()+"://"+e.ref.Name())
	}
	want := []string{
		"http://127.0.0.1:5000/pre/library/busybox:1",
		"https://index.docker.io/library/busybox:1",
		"http://index.docker.io/library/busybox:1",
	}
	if len(got) != len(want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("endpoint %d = %s, want %s", i, got[i], want[i])
		}
	}
}

func TestAuthenticator(t *testing.T) {
	for _, tc := range []struct {
		name     string
		auth     *Auth
		host     string
		upstream bool
		want     string // user:pass|identity|registry, or "anon"
		bad      bool
	}{
		{name: "nil", auth: nil, want: "anon"},
		{name: "empty", auth: &Auth{}, want: "anon"},
		{name: "basic", auth: &Auth{Username: "u", Password: "p"}, upstream: true, want: "u:p||"},
		{name: "auth field", auth: &Auth{Auth: "dTpw"}, upstream: true, want: "u:p||"},
		{name: "bad auth field", auth: &Auth{Auth: "!!!"}, upstream: true, bad: true},
		{name: "auth field without colon", auth: &Auth{Auth: "dXNlcg=="}, upstream: true, bad: true},
		{name: "identity token", auth: &Auth{IdentityToken: "id"}, upstream: true, want: ":|id|"},
		{name: "registry token", auth: &Auth{RegistryToken: "rt"}, upstream: true, want: ":||rt"},
		{name: "mirror of other server", auth: &Auth{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}, host: "mirror.local", want: "anon"},
		{name: "mirror matching server", auth: &Auth{Username: "u", Password: "p", ServerAddress: "mirror.local"}, host: "mirror.local", want: "u:p||"},
		{name: "mirror without server address", auth: &Auth{Username: "u", Password: "p"}, host: "mirror.local", want: "u:p||"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.auth.authenticator(tc.host, tc.upstream)
			if tc.bad {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := a.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			got := "anon"
			if cfg.Username != "" || cfg.Password != "" || cfg.IdentityToken != "" || cfg.RegistryToken != "" {
				got = cfg.Username + ":" + cfg.Password + "|" + cfg.IdentityToken + "|" + cfg.RegistryToken
			}
			if got != tc.want {
				t.Errorf("auth = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSelectManifest(t *testing.T) {
	d := func(os, arch, variant string, mt types.MediaType) v1.Descriptor {
		return v1.Descriptor{MediaType: mt, Digest: v1.Hash{Algorithm: "sha256", Hex: os + arch + variant}, Platform: &v1.Platform{OS: os, Architecture: arch, Variant: variant}}
	}
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{
		d("unknown", "unknown", "", types.OCIManifestSchema1),
		d("linux", "arm", "v6", types.DockerManifestSchema2),
		d("linux", "arm", "v7", types.DockerManifestSchema2),
		d("linux", "arm64", "v8", types.OCIManifestSchema1),
		d("windows", "amd64", "", types.OCIManifestSchema1),
		d("linux", "amd64", "", types.OCIManifestSchema1),
		d("linux", "s390x", "", types.OCIImageIndex), // not an image
	}}
	for _, tc := range []struct {
		want v1.Platform
		hex  string
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, "linuxamd64"},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "linuxarm64v8"},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, "linuxarm64v8"},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "linuxarmv7"},
		{v1.Platform{OS: "windows", Architecture: "amd64"}, "windowsamd64"},
		{v1.Platform{OS: "linux", Architecture: "s390x"}, ""},
		{v1.Platform{OS: "linux", Architecture: "riscv64"}, ""},
	} {
		got, err := selectManifest(idx, tc.want)
		if tc.hex == "" {
			if !errdefs.IsNotFound(err) {
				t.Errorf("%s: %v, %v; want NotFound", tc.want.String(), got.Digest, err)
			}
			continue
		}
		if err != nil || got.Digest.Hex != tc.hex {
			t.Errorf("%s: %v, %v; want %s", tc.want.String(), got.Digest.Hex, err, tc.hex)
		}
	}
}

func TestChainIDs(t *testing.T) {
	a := "sha256:" + "a" + testDigest[8:]
	b := "sha256:" + "b" + testDigest[8:]
	got := chainIDs([]string{a, b})
	if got[0] != a || got[1] == b || len(got[1]) != 71 {
		t.Errorf("chainIDs = %v", got)
	}
	if again := chainIDs([]string{a, b}); again[1] != got[1] {
		t.Error("chain IDs not deterministic")
	}
}

func TestNamesFor(t *testing.T) {
	// One content pulled under two names, as the node e2e images are.
	img := Image{
		RepoTags: []string{"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1", "registry.k8s.io/e2e-test-images/busybox:1.37.0-2", "docker.io/library/busybox:1.36"},
		RepoDigests: []string{"registry.k8s.io/e2e-test-images/glibc-dns-testing@sha256:aaaa", "registry.k8s.io/e2e-test-images/busybox@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
			"docker.io/library/busybox@sha256:cccc"},
	}
	for _, tc := range []struct {
		name        string
		refs        []string
		tag, digest string
	}{
		{"no refs: the first", nil, img.RepoTags[0], img.RepoDigests[0]},
		{"the pod's tag", []string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}, img.RepoTags[1], img.RepoDigests[1]},
		{"a short Docker Hub name", []string{"busybox:1.36"}, img.RepoTags[2], img.RepoDigests[2]},
		{"an image ID, then the pod's tag", []string{"sha256:0123", "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"}, img.RepoTags[1], img.RepoDigests[1]},
		{"a digest: its repository's tag", []string{"registry.k8s.io/e2e-test-images/busybox@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}, img.RepoTags[1], img.RepoDigests[1]},
		{"a tag the image lacks", []string{"busybox:latest"}, img.RepoTags[0], img.RepoDigests[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag, digest := img.NamesFor(tc.refs...)
			if tag != tc.tag || digest != tc.digest {
				t.Errorf("NamesFor(%q) = %q, %q; want %q, %q", tc.refs, tag, digest, tc.tag, tc.digest)
			}
		})
	}
	if tag, digest := (Image{}).NamesFor("busybox"); tag != "" || digest != "" {
		t.Errorf("no names: %q, %q", tag, digest)
	}
}
