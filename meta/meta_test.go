package meta

import (
	"errors"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/skiffcri/skiff/errdefs"
)

func TestStore(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pod("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing pod: err = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.PutPod(&Pod{ID: id, State: "ready"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutContainer(&Container{ID: "c1", PodID: "a"}); err != nil {
		t.Fatal(err)
	}
	pods, err := s.Pods()
	if err != nil || len(pods) != 2 {
		t.Fatalf("pods = %v, %v", pods, err)
	}
	if err := s.DeletePod("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePod("a"); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	c, err := s.Container("c1")
	if err != nil || c.PodID != "a" {
		t.Fatalf("container = %+v, %v", c, err)
	}
}
