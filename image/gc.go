package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/bbolt"
)

// gcLocked frees content blobs and layers that no image record, holder or
// in-flight pull references, and layer dirs that were never committed.
// Must be called with s.mu held.
func (s *Store) gcLocked(ctx context.Context) error {
	liveBlobs := map[string]bool{}
	liveLayers := map[string]bool{}
	for c := range s.active {
		liveLayers[c] = true
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		err := tx.Bucket(imagesBucket).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("image record %s: %w", k, err)
			}
			for _, b := range r.Blobs {
				liveBlobs[strings.TrimPrefix(b, "sha256:")] = true
			}
			for _, c := range r.ChainIDs {
				liveLayers[strings.TrimPrefix(c, "sha256:")] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(holdersBucket).ForEach(func(k, v []byte) error {
			var h holder
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("holder record %q: %w", k, err)
			}
			for _, c := range h.ChainIDs {
				liveLayers[strings.TrimPrefix(c, "sha256:")] = true
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	var errs []error
	blobs, err := os.ReadDir(s.contentDir)
	if err != nil {
		return err
	}
	for _, e := range blobs {
		if !liveBlobs[e.Name()] {
			if err := os.Remove(filepath.Join(s.contentDir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	layers, err := os.ReadDir(s.layersDir)
	if err != nil {
		return err
	}
	for _, e := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(s.layersDir, e.Name())
		_, statErr := os.Stat(filepath.Join(p, committedMarker))
		if liveLayers[e.Name()] && statErr == nil {
			continue
		}
		if liveLayers[e.Name()] && s.active[e.Name()] > 0 {
			continue
		}
		if err := removeLayerDir(p, s.tmpDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeLayerDir first renames a layer out of layers/ so a crash in the middle
// of a long RemoveAll never leaves a half-deleted layer that looks committed.
func removeLayerDir(p, tmpDir string) error {
	dead, err := os.MkdirTemp(tmpDir, "dead-")
	if err != nil {
		return err
	}
	target := filepath.Join(dead, "l")
	if err := os.Rename(p, target); err != nil {
		os.Remove(dead)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(dead)
}
