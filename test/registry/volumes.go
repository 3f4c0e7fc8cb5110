package registry

import v1 "github.com/google/go-containerregistry/pkg/v1"

// Images for image volumes (KEP-4639, CRI Mount.image): data-only images
// whose content the kernel tests check through containers' image volume
// mounts. Nothing in them runs.
const (
	// VolumeImage has two layers, so a runtime mounts it as an overlay.
	// The lower layer holds data/{a,b}.txt, data/sub/c.txt and three
	// symlinks: sub -> data/sub (inside the image), escape ->
	// ../../../../etc and abs -> /etc (both leading out of it). The upper
	// layer replaces data/b.txt, adds data/sub/d.txt and deletes
	// data/a.txt with a whiteout.
	VolumeImage = "docker.io/skiff-test/volume-data:2-layers"
	// VolumeImageSingle has one layer (only/file.txt, only/dir/x), which a
	// runtime mounts as a read-only bind: overlay wants two lower layers
	// when it has no upper one.
	VolumeImageSingle = "docker.io/skiff-test/volume-data:1-layer"
)

// Contents of VolumeImage's and VolumeImageSingle's files, for tests.
const (
	VolumeFileB      = "b from the upper layer\n"
	VolumeFileC      = "c\n"
	VolumeFileD      = "d\n"
	VolumeFileSingle = "single\n"
)

func (b *builder) volumeImages() ([]Image, error) {
	lower, err := layerStep("ADD data and symlinks",
		file("data/a.txt", 0o644, "a\n"),
		file("data/b.txt", 0o644, "b from the lower layer\n"),
		file("data/sub/c.txt", 0o644, VolumeFileC),
		symlink("sub", "data/sub"),
		symlink("escape", "../../../../etc"),
		symlink("abs", "/etc"),
	)
	if err != nil {
		return nil, err
	}
	upper, err := layerStep("ADD data/b.txt data/sub/d.txt, RUN rm data/a.txt",
		file("data/b.txt", 0o644, VolumeFileB),
		file("data/sub/d.txt", 0o644, VolumeFileD),
		file("data/.wh.a.txt", 0o644, ""),
	)
	if err != nil {
		return nil, err
	}
	two, err := b.image(true, b.arch, []step{lower, upper}, v1.Config{})
	if err != nil {
		return nil, err
	}
	only, err := layerStep("ADD only",
		file("only/file.txt", 0o644, VolumeFileSingle),
		file("only/dir/x", 0o644, "x\n"),
	)
	if err != nil {
		return nil, err
	}
	one, err := b.image(true, b.arch, []step{only}, v1.Config{})
	if err != nil {
		return nil, err
	}
	return []Image{{Names: []string{VolumeImage}, Image: two}, {Names: []string{VolumeImageSingle}, Image: one}}, nil
}
