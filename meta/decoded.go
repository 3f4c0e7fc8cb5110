package meta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"go.etcd.io/bbolt"
)

// decoded keeps the last decoding of each record of one bucket with the
// bytes it came from. The kubelet lists pods and containers every second and
// almost every record is the same as the second before: comparing its bytes
// is a fraction of decoding its JSON again. Every caller gets its own deep
// copy, so nothing a caller changes reaches the cache or another caller.
type decoded[T any] struct {
	clone func(*T) *T

	mu   sync.Mutex
	byID map[string]decodedRecord[T]
}

type decodedRecord[T any] struct {
	raw []byte
	v   *T
}

func newDecoded[T any](clone func(*T) *T) *decoded[T] {
	return &decoded[T]{clone: clone, byID: map[string]decodedRecord[T]{}}
}

// list decodes every record of bucket, reusing the decoding of each record
// whose bytes are unchanged, and forgets the records that are gone.
func (d *decoded[T]) list(db *bbolt.DB, bucket []byte) ([]*T, error) {
	var out []*T
	err := db.View(func(tx *bbolt.Tx) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		seen := make(map[string]bool, len(d.byID))
		err := tx.Bucket(bucket).ForEach(func(k, b []byte) error {
			id := string(k)
			seen[id] = true
			if r, ok := d.byID[id]; ok && bytes.Equal(r.raw, b) {
				out = append(out, d.clone(r.v))
				return nil
			}
			v := new(T)
			if err := json.Unmarshal(b, v); err != nil {
				delete(d.byID, id)
				return fmt.Errorf("meta: decode %s %s: %w", bucket, k, err)
			}
			// b belongs to the transaction: keep a copy.
			d.byID[id] = decodedRecord[T]{raw: bytes.Clone(b), v: d.clone(v)}
			out = append(out, v)
			return nil
		})
		if err != nil {
			return err
		}
		for id := range d.byID {
			if !seen[id] {
				delete(d.byID, id)
			}
		}
		return nil
	})
	return out, err
}

// clone is a deep copy of c: TestCloneIsDeep fails when a field is added
// that it shares.
func (c *Container) clone() *Container {
	n := *c
	n.Config = bytes.Clone(c.Config)
	n.Resources = bytes.Clone(c.Resources)
	n.Groups = slices.Clone(c.Groups)
	n.Labels = maps.Clone(c.Labels)
	n.Annotations = maps.Clone(c.Annotations)
	n.ImageVolumes = slices.Clone(c.ImageVolumes)
	n.IDMappedImageVolumes = slices.Clone(c.IDMappedImageVolumes)
	return &n
}

// clone is a deep copy of p: TestCloneIsDeep fails when a field is added
// that it shares.
func (p *Pod) clone() *Pod {
	n := *p
	n.Config = bytes.Clone(p.Config)
	n.IPs = slices.Clone(p.IPs)
	n.Labels = maps.Clone(p.Labels)
	n.Annotations = maps.Clone(p.Annotations)
	n.Resources = bytes.Clone(p.Resources)
	n.Overhead = bytes.Clone(p.Overhead)
	return &n
}
