// Package statedir is the one description of the per-container directories
// under the runtime state (<state>/containers/<id>), which several owners
// fill: the rootfs manager mounts the container's root filesystem there,
// the CRI layer keeps the OCI spec it generated, and the pod's shim writes
// the exit record. Each owner removes only what it made; the CRI layer
// removes the directory with the container.
package statedir

import "path/filepath"

// Names inside a container's directory.
const (
	RootfsDir = "rootfs"
	SpecFile  = "config.json"
)

// Under is the layout of the container directories in the runtime state
// directory state: state/containers.
func Under(state string) Containers { return Containers{Root: filepath.Join(state, "containers")} }

// Containers lays out the container directories below Root, e.g.
// /run/skiff/containers.
type Containers struct {
	Root string
}

// Dir is container id's directory; the shim writes its exit record here.
func (c Containers) Dir(id string) string { return filepath.Join(c.Root, id) }

// Rootfs is where container id's root filesystem is mounted.
func (c Containers) Rootfs(id string) string { return filepath.Join(c.Root, id, RootfsDir) }

// Spec is the OCI runtime spec generated for container id.
func (c Containers) Spec(id string) string { return filepath.Join(c.Root, id, SpecFile) }
