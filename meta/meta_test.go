package meta

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/skiffcri/skiff/errdefs"
)

func TestStore(t *testing.T) {
	s, _ := newTestStore(t)
	if _, err := s.Pod("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing pod: err = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.PutPod(&Pod{ID: id, State: "ready"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutContainer(&Container{ID: "c1", PodID: "a", ImageVolumes: []string{"sha256:aa", "sha256:bb"}, IDMappedImageVolumes: []string{"sha256:bb"}}); err != nil {
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
	if err != nil || c.PodID != "a" || !slices.Equal(c.ImageVolumes, []string{"sha256:aa", "sha256:bb"}) || !slices.Equal(c.IDMappedImageVolumes, []string{"sha256:bb"}) {
		t.Fatalf("container = %+v, %v", c, err)
	}
}

// A record written before a field existed must still decode, with the
// field empty: the daemon reads records of every earlier version.
func TestOldContainerRecordDecodes(t *testing.T) {
	s, db := newTestStore(t)
	old := `{"id":"c0","podId":"p0","name":"n","config":{"metadata":{"name":"n"}},"imageId":"sha256:1",` +
		`"imageRef":"r","imageName":"i","createdAt":"2026-11-01T10:00:00Z","bundle":"/run/skiff/containers/c0",` +
		`"rootfs":"/run/skiff/containers/c0/rootfs","stopSignal":"SIGQUIT","uid":0,"gid":0}`
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(containersBucket).Put([]byte("c0"), []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Container("c0")
	if err != nil {
		t.Fatal(err)
	}
	if c.StopSignal != "SIGQUIT" || c.Resources != nil || c.ImageVolumes != nil || c.IDMappedImageVolumes != nil {
		t.Fatalf("old record = %+v", c)
	}
	c.Resources = []byte(`{"linux":{"memoryLimitInBytes":"67108864"}}`)
	if err := s.PutContainer(c); err != nil {
		t.Fatal(err)
	}
	if c, err = s.Container("c0"); err != nil || string(c.Resources) != `{"linux":{"memoryLimitInBytes":"67108864"}}` {
		t.Fatalf("round trip: %s, %v", c.Resources, err)
	}
}

// TestPodRecordOfEveryVersion reads a pod record written before the
// namespaces and files were typed.
func TestPodRecordOfEveryVersion(t *testing.T) {
	old := `{"id":"p1","name":"n","config":{},"state":"ready","createdAt":"2026-12-01T00:00:00Z",
		"nsDir":"/run/skiff/pods/p1","nsPaths":{"net":"/ns/net","ipc":"/ns/ipc","uts":"/ns/uts","pid":"/ns/pid"},
		"shmPath":"/pod/shm","files":{"hostname":"/pod/hostname","hosts":"/pod/hosts","resolv.conf":"/pod/resolv.conf"},
		"shimSocket":"/x.sock"}`
	var p Pod
	if err := json.Unmarshal([]byte(old), &p); err != nil {
		t.Fatal(err)
	}
	wantNS := PodNamespaces{Net: "/ns/net", IPC: "/ns/ipc", UTS: "/ns/uts", PID: "/ns/pid"}
	wantFiles := PodFiles{Hostname: "/pod/hostname", Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Shm: "/pod/shm"}
	if p.ID != "p1" || p.State != "ready" || p.Namespaces != wantNS || p.Files != wantFiles {
		t.Fatalf("old record read as %+v", p)
	}
	b, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	var again Pod
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if again.Namespaces != wantNS || again.Files != wantFiles {
		t.Fatalf("rewritten record read as %+v (%s)", again, b)
	}
}

// newTestStore is a Store on a new database, closed when the test ends.
func newTestStore(t testing.TB) (*Store, *bbolt.DB) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}
