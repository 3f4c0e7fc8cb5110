package registry

import (
	"compress/gzip"
	"context"
	"fmt"
	"runtime"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Upstream registries and repositories critest v1.36.0 pulls from.
const (
	criTools = "gcr.io/k8s-staging-cri-tools/"
	e2e      = "registry.k8s.io/e2e-test-images/"
	ecr      = "public.ecr.aws/docker/library/"
)

// LargeName is the benchmark image built when Options.WithLarge is set:
// three layers of about 33 MB each of pseudo-random data on busybox.
const LargeName = "docker.io/bench/large:latest"

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image is one image of the set and the upstream names it is served under.
// Exactly one of Image and Index is set.
type Image struct {
	// Names are upstream references with a tag, e.g.
	// "gcr.io/k8s-staging-cri-tools/test-image-tag:test".
	Names []string
	Image v1.Image
	Index v1.ImageIndex
}

// Options select what the image set contains.
type Options struct {
	// Busybox is the statically linked busybox to build from; DefaultBusybox if empty.
	Busybox string
	// WithLarge adds LargeName (about 100 MB, slow to build) for benchmarks.
	WithLarge bool
	// Agnhost, the path of a static agnhost binary, adds the images the
	// kubelet's node e2e suite pulls (nodee2e.go).
	Agnhost string
}

// builder holds the compressed layers shared by the images of one set.
type builder struct {
	arch  string
	bb    *busyboxRoot
	bin   []byte // layer 1: busybox and applet links
	etc   []byte // layer 2: accounts and directories
	decoy []byte // only layer of the other-platform entry of indexes
}

// step is one history entry of an image: a layer, or a config-only change.
type step struct {
	createdBy string
	gz        []byte // nil: config only (empty_layer)
}

func newBuilder(ctx context.Context, busybox string) (*builder, error) {
	bb, err := loadBusybox(ctx, busybox)
	if err != nil {
		return nil, err
	}
	b := &builder{arch: runtime.GOARCH, bb: bb}
	if b.bin, err = compress(bb.binEntries(), gzip.DefaultCompression); err != nil {
		return nil, fmt.Errorf("busybox layer: %w", err)
	}
	if b.etc, err = compress(etcEntries(), gzip.DefaultCompression); err != nil {
		return nil, fmt.Errorf("etc layer: %w", err)
	}
	b.decoy, err = compress([]entry{file("README", 0o644,
		"Placeholder for another platform: a runtime that pulls this picked the wrong manifest.\n")},
		gzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("decoy layer: %w", err)
	}
	return b, nil
}

func (b *builder) baseSteps() []step {
	return []step{
		{createdBy: "COPY busybox /bin/busybox (Debian busybox-static) and a /bin symlink per applet", gz: b.bin},
		{createdBy: "ADD /etc/passwd /etc/group and the directory tree", gz: b.etc},
	}
}

// layerStep compresses entries into a history step.
func layerStep(createdBy string, entries ...entry) (step, error) {
	gz, err := compress(entries, gzip.DefaultCompression)
	if err != nil {
		return step{}, fmt.Errorf("layer %q: %w", createdBy, err)
	}
	return step{createdBy: createdBy, gz: gz}, nil
}

// image assembles an image for arch from steps with the given run config.
func (b *builder) image(oci bool, arch string, steps []step, cfg v1.Config) (v1.Image, error) {
	base := empty.Image
	layerType := types.DockerLayer
	if oci {
		base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
		layerType = types.OCILayer
	}
	var adds []mutate.Addendum
	var history []v1.History
	for _, s := range steps {
		h := v1.History{Created: v1.Time{Time: epoch}, CreatedBy: s.createdBy, EmptyLayer: s.gz == nil}
		history = append(history, h)
		if s.gz == nil {
			continue
		}
		l, err := layerOf(s.gz, layerType)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.RootFS.Type = "layers"
	cf.History = history
	if len(cfg.Env) == 0 {
		cfg.Env = []string{defaultPath}
	}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// index wraps img in a manifest list (Docker) or index (OCI) together with a
// decoy manifest for another architecture, so pulls must select by platform.
func (b *builder) index(oci bool, img v1.Image) (v1.ImageIndex, error) {
	other := "arm64"
	if b.arch == "arm64" {
		other = "amd64"
	}
	decoy, err := b.image(oci, other, []step{{createdBy: "ADD README", gz: b.decoy}}, v1.Config{Cmd: []string{"/README"}})
	if err != nil {
		return nil, err
	}
	var idx v1.ImageIndex = empty.Index
	if !oci {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	return mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: b.arch}}},
		mutate.IndexAddendum{Add: decoy, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
	), nil
}

// Busybox builds the plain busybox image (two layers, Cmd ["sh"]) from
// Debian's busybox-static, for tests that need some runnable image.
func Busybox(ctx context.Context) (v1.Image, error) {
	b, err := newBuilder(ctx, "")
	if err != nil {
		return nil, err
	}
	return b.busybox(false)
}

func (b *builder) busybox(oci bool) (v1.Image, error) {
	return b.image(oci, b.arch, b.baseSteps(), v1.Config{Cmd: []string{"sh"}})
}

// Images builds every image critest v1.36.0 pulls, under the upstream names
// it uses, plus a few common aliases (docker.io busybox, pause 3.10).
func Images(ctx context.Context, opts Options) ([]Image, error) {
	b, err := newBuilder(ctx, opts.Busybox)
	if err != nil {
		return nil, err
	}
	var set []Image
	add := func(img v1.Image, idx v1.ImageIndex, names ...string) {
		set = append(set, Image{Names: names, Image: img, Index: idx})
	}

	// busybox: the default container image of most specs, and aliases.
	bbDocker, err := b.busybox(false)
	if err != nil {
		return nil, err
	}
	add(bbDocker, nil,
		e2e+"busybox:1.29-2",
		"registry.k8s.io/busybox:latest",
		"docker.io/library/busybox:1.37.0",
		"docker.io/library/busybox:1.36",
	)
	bbList, err := b.index(false, bbDocker)
	if err != nil {
		return nil, err
	}
	add(nil, bbList, "docker.io/library/busybox:latest")
	bbOCI, err := b.busybox(true)
	if err != nil {
		return nil, err
	}
	// pkg/benchmark's image-listing set; one image under all five names.
	add(bbOCI, nil,
		ecr+"busybox:1.35.0-glibc", ecr+"busybox:1-uclibc", ecr+"busybox:1", ecr+"busybox:1-glibc", ecr+"busybox:1-musl")

	// cri-tools' test images: busybox plus one file named after the image
	// (images/image-test), as Docker manifest lists; the per-architecture
	// images are also served as <name>-<arch>:<tag>, as upstream does.
	tagged := func(file string, repoTags ...string) error {
		s, err := layerStep("ADD "+file+" /"+file, entryFile(file))
		if err != nil {
			return err
		}
		img, err := b.image(false, b.arch, append(b.baseSteps(), s), v1.Config{Cmd: []string{"sh"}})
		if err != nil {
			return err
		}
		idx, err := b.index(false, img)
		if err != nil {
			return err
		}
		var lists, arch []string
		for _, rt := range repoTags {
			repo, tag := splitTag(rt)
			lists = append(lists, criTools+repo+":"+tag)
			arch = append(arch, criTools+repo+"-"+b.arch+":"+tag)
		}
		add(nil, idx, lists...)
		add(img, nil, arch...)
		return nil
	}
	for _, t := range []struct {
		file     string
		repoTags []string
	}{
		{"test-image-1", []string{"test-image-1:latest"}},
		{"test-image-2", []string{"test-image-2:latest"}},
		{"test-image-3", []string{"test-image-3:latest"}},
		{"test-image-latest", []string{"test-image-latest:latest"}},
		// Pullable by tag only: critest asks for an upstream digest that no
		// rebuild can reproduce.
		{"test-image-digest", []string{"test-image-digest:latest"}},
		{"same-image", []string{"test-image-tags:1", "test-image-tags:2", "test-image-tags:3"}},
		{"test", []string{"test-image-tag:test"}},
		{"all", []string{"test-image-tag:all"}},
	} {
		if err := tagged(t.file, t.repoTags...); err != nil {
			return nil, err
		}
	}

	// Image users (images/image-user): busybox with only USER set, as OCI
	// indexes. critest reads uid/username back from ImageStatus.
	for _, u := range []struct{ repo, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1004"},
		{"test-image-user-username-group", "www-data:1004"},
	} {
		img, err := b.image(true, b.arch, append(b.baseSteps(), step{createdBy: "USER " + u.user}),
			v1.Config{Cmd: []string{"sh"}, User: u.user})
		if err != nil {
			return nil, err
		}
		idx, err := b.index(true, img)
		if err != nil {
			return nil, err
		}
		add(nil, idx, criTools+u.repo+":latest")
	}

	// images/image-predefined-group: user default-user (1000) whose
	// supplementary group 50000 is defined only in the image's /etc/group.
	s, err := layerStep("RUN adduser -u 1000 -D default-user && addgroup -g 50000 group-defined-in-image && addgroup default-user group-defined-in-image",
		file("etc/passwd", 0o644, etcPasswd+"default-user:x:1000:1000::/home/default-user:/bin/sh\n"),
		file("etc/group", 0o644, etcGroup+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
		owned(dir("home/default-user", 0o755), 1000, 1000),
	)
	if err != nil {
		return nil, err
	}
	img, err := b.image(true, b.arch, append(b.baseSteps(), s, step{createdBy: "USER 1000"}),
		v1.Config{Cmd: []string{"sh"}, User: "1000"})
	if err != nil {
		return nil, err
	}
	idx, err := b.index(true, img)
	if err != nil {
		return nil, err
	}
	add(nil, idx, criTools+"test-image-predefined-group:latest")

	// Web servers: nginx (port 80) and cri-tools' hostnet-nginx (12003).
	for _, w := range []struct {
		name string
		port string
		oci  bool
	}{
		{e2e + "nginx:1.14-2", "80", false},
		{criTools + "hostnet-nginx-" + b.arch + ":latest", "12003", true},
	} {
		s, err := layerStep("COPY nginx stand-in (busybox httpd) listening on port "+w.port,
			file("usr/sbin/nginx", 0o755, nginxScript),
			file("etc/nginx/port", 0o644, w.port+"\n"),
			file("usr/share/nginx/html/index.html", 0o644, indexHTML),
			dir("var/run", 0o755),
			dir("var/log/nginx", 0o755),
		)
		if err != nil {
			return nil, err
		}
		img, err := b.image(w.oci, b.arch, append(b.baseSteps(), s), v1.Config{
			Cmd:          []string{"nginx", "-g", "daemon off;"},
			ExposedPorts: map[string]struct{}{w.port + "/tcp": {}},
			StopSignal:   "SIGTERM",
		})
		if err != nil {
			return nil, err
		}
		add(img, nil, w.name)
	}

	s, err = layerStep("COPY httpd-foreground stand-in (busybox httpd) and htdocs",
		file("usr/local/bin/httpd-foreground", 0o755, httpdScript),
		file("usr/local/apache2/htdocs/index.html", 0o644, itWorksHTML),
	)
	if err != nil {
		return nil, err
	}
	img, err = b.image(false, b.arch, append(b.baseSteps(), s), v1.Config{
		Cmd:          []string{"httpd-foreground"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
		StopSignal:   "SIGWINCH",
		WorkingDir:   "/usr/local/apache2",
	})
	if err != nil {
		return nil, err
	}
	add(img, nil, e2e+"httpd:2.4.39-4")

	s, err = layerStep("COPY nnp and a setuid-root busybox",
		binary("usr/local/bin/busybox-nnp", 0o4755, b.bb.binary),
		file("etc/busybox.conf", 0o600, busyboxConf),
		file("usr/local/bin/nnp", 0o755, nnpScript),
	)
	if err != nil {
		return nil, err
	}
	img, err = b.image(false, b.arch, append(b.baseSteps(), s, step{createdBy: "USER 1000"}), v1.Config{
		Entrypoint: []string{"/usr/local/bin/nnp"},
		User:       "1000",
	})
	if err != nil {
		return nil, err
	}
	add(img, nil, e2e+"nonewprivs:1.3")

	// pause: the same image under both registries critest compares.
	s, err = layerStep("COPY pause stand-in /pause", file("pause", 0o755, pauseScript))
	if err != nil {
		return nil, err
	}
	img, err = b.image(true, b.arch, append(b.baseSteps(), s, step{createdBy: "USER 65535:65535"}), v1.Config{
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
	})
	if err != nil {
		return nil, err
	}
	if idx, err = b.index(true, img); err != nil {
		return nil, err
	}
	add(nil, idx, "registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9", "registry.k8s.io/pause:3.10")

	vols, err := b.volumeImages()
	if err != nil {
		return nil, fmt.Errorf("image volume images: %w", err)
	}
	set = append(set, vols...)

	if opts.WithLarge {
		img, err := b.large(ctx)
		if err != nil {
			return nil, err
		}
		add(img, nil, LargeName)
	}
	if opts.Agnhost != "" {
		return b.addNodeE2E(ctx, set, opts.Agnhost)
	}
	return set, nil
}

// Names lists every upstream name of set, sorted.
func Names(set []Image) []string {
	var names []string
	for _, im := range set {
		names = append(names, im.Names...)
	}
	sort.Strings(names)
	return names
}

// entryFile is the marker file cri-tools' image-test Dockerfile ADDs.
func entryFile(name string) entry { return file(name, 0o644, "") }

func splitTag(repoTag string) (repo, tag string) {
	for i := len(repoTag) - 1; i >= 0; i-- {
		if repoTag[i] == ':' {
			return repoTag[:i], repoTag[i+1:]
		}
	}
	return repoTag, "latest"
}
