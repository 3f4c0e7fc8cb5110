// Package meta keeps skiffd's records of pods and containers in bbolt, so a
// restarted daemon rebuilds its whole view from disk.
package meta

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/skiffcri/skiff/errdefs"
)

var (
	podsBucket       = []byte("pods")
	containersBucket = []byte("containers")
)

// Store reads and writes records in the daemon's meta.db.
type Store struct {
	db         *bbolt.DB
	pods       *decoded[Pod]
	containers *decoded[Container]
}

// New makes sure the buckets exist.
func New(db *bbolt.DB) (*Store, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{podsBucket, containersBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("meta: create buckets: %w", err)
	}
	return &Store{db: db, pods: newDecoded((*Pod).clone), containers: newDecoded((*Container).clone)}, nil
}

// Pod is the persisted record of a pod sandbox.
type Pod struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`   // reserved name: name_namespace_uid_attempt
	Config         json.RawMessage `json:"config"` // protojson of runtimeapi.PodSandboxConfig
	RuntimeHandler string          `json:"runtimeHandler,omitempty"`
	State          string          `json:"state"` // ready, notready
	CreatedAt      time.Time       `json:"createdAt"`
	IPs            []string        `json:"ips,omitempty"`
	// Namespaces are the pod's pinned namespaces.
	Namespaces PodNamespaces `json:"namespaces"`
	// Files are the files every container of the pod bind-mounts.
	Files        PodFiles `json:"podFiles"`
	CgroupParent string   `json:"cgroupParent,omitempty"`
	// InitCgroup is the cgroup of the pod init (pods sharing a PID
	// namespace), "" when the pod has none.
	InitCgroup   string            `json:"initCgroup,omitempty"`
	NetworkSetUp bool              `json:"networkSetUp,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	// Resources and Overhead are the protojson of the pod-level
	// runtimeapi.LinuxContainerResources from the last
	// UpdatePodSandboxResources; empty until one came.
	Resources json.RawMessage `json:"resources,omitempty"`
	Overhead  json.RawMessage `json:"overhead,omitempty"`
}

// PodNamespaces are the paths of a pod's pinned namespace files; "" is the
// host's namespace of that kind (PID: the pod shares none).
type PodNamespaces struct {
	Net string `json:"net,omitempty"`
	IPC string `json:"ipc,omitempty"`
	UTS string `json:"uts,omitempty"`
	PID string `json:"pid,omitempty"`
	// User is the pod's own user namespace; "" is the node's.
	User string `json:"user,omitempty"`
}

// PodFiles are the paths of a pod's hostname, hosts and resolv.conf files
// and of its /dev/shm.
type PodFiles struct {
	Hostname   string `json:"hostname,omitempty"`
	Hosts      string `json:"hosts,omitempty"`
	ResolvConf string `json:"resolvConf,omitempty"`
	Shm        string `json:"shm,omitempty"`
}

// UnmarshalJSON reads pod records of every version: records written before
// the namespaces and files were typed kept them in maps ("nsPaths",
// "files") and the shm path apart ("shmPath").
func (p *Pod) UnmarshalJSON(b []byte) error {
	type current Pod
	var rec struct {
		current
		NSPaths  map[string]string `json:"nsPaths"`
		OldFiles map[string]string `json:"files"`
		ShmPath  string            `json:"shmPath"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return err
	}
	*p = Pod(rec.current)
	if rec.NSPaths != nil {
		p.Namespaces = PodNamespaces{Net: rec.NSPaths["net"], IPC: rec.NSPaths["ipc"], UTS: rec.NSPaths["uts"], PID: rec.NSPaths["pid"]}
	}
	if rec.OldFiles != nil {
		p.Files = PodFiles{Hostname: rec.OldFiles["hostname"], Hosts: rec.OldFiles["hosts"], ResolvConf: rec.OldFiles["resolv.conf"]}
	}
	if rec.ShmPath != "" {
		p.Files.Shm = rec.ShmPath
	}
	return nil
}

// Container is the persisted record of a container; its live state comes from
// the pod's shim and the exit file.
type Container struct {
	ID        string          `json:"id"`
	PodID     string          `json:"podId"`
	Name      string          `json:"name"`   // reserved name within the pod
	Config    json.RawMessage `json:"config"` // protojson of runtimeapi.ContainerConfig
	ImageID   string          `json:"imageId"`
	ImageRef  string          `json:"imageRef"`
	ImageName string          `json:"imageName"`
	CreatedAt time.Time       `json:"createdAt"`
	LogPath   string          `json:"logPath,omitempty"`
	Bundle    string          `json:"bundle"`
	Rootfs    string          `json:"rootfs"`
	// CgroupPath is the container's cgroup, computed once at create
	// (empty in records written before it was kept).
	CgroupPath string `json:"cgroupPath,omitempty"`
	StopSignal string `json:"stopSignal,omitempty"`
	// Resources is the protojson of the runtimeapi.ContainerResources in
	// effect: what CreateContainer applied, then each successful
	// UpdateContainerResources. Records written before it existed have
	// none, and report none.
	Resources json.RawMessage `json:"resources,omitempty"`
	// UID, GID and Groups are the identity the container's process runs as.
	UID         uint32            `json:"uid"`
	GID         uint32            `json:"gid"`
	Groups      []uint32          `json:"groups,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// ImageVolumes are the IDs of the images the container mounts as
	// image volumes through each image's shared mount, each once. The
	// record lists them before they are mounted, so an image's shared
	// mount stays while any record names it.
	ImageVolumes []string `json:"imageVolumes,omitempty"`
	// IDMappedImageVolumes are the IDs of the images the container mounts
	// as image volumes through its pod's own mount of each, idmapped with
	// the pod's user namespace (its image volumes that carry the pod's ID
	// mappings), each once; listed before they are mounted, like
	// ImageVolumes. An image may be in both lists, when some of its
	// mounts carry mappings and some do not.
	IDMappedImageVolumes []string `json:"idmappedImageVolumes,omitempty"`
	// ExitSeen is set once skiffd has observed the container's exit and
	// published its CONTAINER_STOPPED event, so that a restarted skiffd
	// publishes the exits it missed, and only those.
	ExitSeen bool `json:"exitSeen,omitempty"`
}

// PutPod writes p, replacing any record with the same ID.
func (s *Store) PutPod(p *Pod) error { return put(s.db, podsBucket, p.ID, p) }

// Pod reads one pod; ErrNotFound when absent.
func (s *Store) Pod(id string) (*Pod, error) {
	var p Pod
	if err := get(s.db, podsBucket, id, &p); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	return &p, nil
}

// Pods lists all pods.
func (s *Store) Pods() ([]*Pod, error) { return s.pods.list(s.db, podsBucket) }

// DeletePod removes the record; absent is fine.
func (s *Store) DeletePod(id string) error { return del(s.db, podsBucket, id) }

// PutContainer writes c, replacing any record with the same ID.
func (s *Store) PutContainer(c *Container) error { return put(s.db, containersBucket, c.ID, c) }

// Container reads one container; ErrNotFound when absent.
func (s *Store) Container(id string) (*Container, error) {
	var c Container
	if err := get(s.db, containersBucket, id, &c); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	return &c, nil
}

// Containers lists all containers.
func (s *Store) Containers() ([]*Container, error) { return s.containers.list(s.db, containersBucket) }

// DeleteContainer removes the record; absent is fine.
func (s *Store) DeleteContainer(id string) error { return del(s.db, containersBucket, id) }

func put(db *bbolt.DB, bucket []byte, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("meta: encode %s %s: %w", bucket, id, err)
	}
	return db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte(id), b) })
}

func get(db *bbolt.DB, bucket []byte, id string, v any) error {
	return db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(id))
		if b == nil {
			return errdefs.ErrNotFound
		}
		return json.Unmarshal(b, v)
	})
}

func del(db *bbolt.DB, bucket []byte, id string) error {
	return db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(id)) })
}
