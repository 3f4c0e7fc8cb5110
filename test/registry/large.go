package registry

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const (
	largeFiles    = 4       // files per data layer
	largeFileSize = 8 << 20 // bytes per file: 2 data layers of 32 MiB, one of 32 MiB + busybox
)

// seeded returns a deterministic stream of pseudo-random (incompressible)
// bytes: the same seed always yields the same image digest.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// large builds LargeName: busybox plus three layers of random data, about
// 100 MB compressed, for pull benchmarks. gzip's fastest level is used since
// random data does not compress anyway.
func (b *builder) large(ctx context.Context) (v1.Image, error) {
	steps := []step{}
	for l := range 3 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var es []entry
		if l == 0 {
			es = append(es, b.bb.binEntries()...)
			es = append(es, etcEntries()...)
		}
		for f := range largeFiles {
			seed := uint64(l*largeFiles + f + 1)
			es = append(es, entry{
				name: fmt.Sprintf("data/layer%d/blob%d", l, f), typ: regType, mode: 0o644,
				open: func() io.Reader { return seeded(seed) }, size: largeFileSize,
			})
		}
		gz, err := compress(es, gzip.BestSpeed)
		if err != nil {
			return nil, fmt.Errorf("large image layer %d: %w", l, err)
		}
		steps = append(steps, step{createdBy: fmt.Sprintf("ADD data/layer%d (%d x %d MiB random)", l, largeFiles, largeFileSize>>20), gz: gz})
	}
	return b.image(true, b.arch, steps, v1.Config{Cmd: []string{"sh"}})
}
