package image

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/skiffcri/skiff/errdefs"
)

func holderKey(holderID, imageID string) []byte { return []byte(holderID + "\x00" + imageID) }

func (r *record) image() (Image, error) {
	img := Image{
		ID:             r.ID,
		RepoTags:       slices.Clone(r.RepoTags),
		RepoDigests:    slices.Clone(r.RepoDigests),
		Size:           r.Size,
		ManifestDigest: r.ManifestDigest,
		Pinned:         r.Pinned,
	}
	if img.RepoTags == nil {
		img.RepoTags = []string{}
	}
	if img.RepoDigests == nil {
		img.RepoDigests = []string{}
	}
	if err := json.Unmarshal(r.Config, &img.Config); err != nil {
		return Image{}, fmt.Errorf("image %s: decode config: %w", r.ID, err)
	}
	return img, nil
}

func getRecord(tx *bbolt.Tx, id string) (*record, error) {
	v := tx.Bucket(imagesBucket).Get([]byte(id))
	if v == nil {
		return nil, errdefs.NotFound("image %q", id)
	}
	r := new(record)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("image record %s: %w", id, err)
	}
	return r, nil
}

func putRecord(tx *bbolt.Tx, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("image record %s: %w", r.ID, err)
	}
	return tx.Bucket(imagesBucket).Put([]byte(r.ID), b)
}

// deleteRecord removes an image and every reference that points to it.
func deleteRecord(tx *bbolt.Tx, r *record) error {
	refs := tx.Bucket(refsBucket)
	for _, k := range slices.Concat(r.RepoTags, r.RepoDigests) {
		if v := refs.Get([]byte(k)); v != nil && string(v) == r.ID {
			if err := refs.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(imagesBucket).Delete([]byte(r.ID))
}

// resolve finds the record ref names; see Get for the accepted forms.
func resolve(tx *bbolt.Tx, ref string) (*record, error) {
	r, _, err := resolveRef(tx, ref)
	return r, err
}

// resolveRef is resolve that also says whether ref named the image by ID.
func resolveRef(tx *bbolt.Tx, ref string) (rec *record, byID bool, err error) {
	if ref == "" {
		return nil, false, errdefs.InvalidArgument("empty image reference")
	}
	if looksLikeID(ref) {
		hex := strings.TrimPrefix(ref, "sha256:")
		if len(hex) == 64 {
			rec, err := getRecord(tx, "sha256:"+hex)
			return rec, true, err
		}
		var found []string
		c := tx.Bucket(imagesBucket).Cursor()
		prefix := []byte("sha256:" + hex)
		for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Next() {
			found = append(found, string(k))
		}
		switch len(found) {
		case 1:
			rec, err := getRecord(tx, found[0])
			return rec, true, err
		case 0:
			// A short hex string may also be a repository name; fall through.
		default:
			return nil, true, errdefs.InvalidArgument("image ID prefix %q is ambiguous (%d images)", ref, len(found))
		}
		if strings.HasPrefix(ref, "sha256:") {
			return nil, true, errdefs.NotFound("image %q", ref)
		}
	}
	key, err := refKey(ref)
	if err != nil {
		return nil, false, err
	}
	id := tx.Bucket(refsBucket).Get([]byte(key))
	if id == nil {
		return nil, false, errdefs.NotFound("image %q", ref)
	}
	rec, err = getRecord(tx, string(id))
	return rec, false, err
}

// looksLikeID reports whether ref has the form of an image ID or ID prefix
// (at least 12 hex digits, optionally with the "sha256:" algorithm).
func looksLikeID(ref string) bool {
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) < 12 || len(hex) > 64 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func normalizeID(id string) string {
	if !strings.HasPrefix(id, "sha256:") {
		return "sha256:" + id
	}
	return id
}
