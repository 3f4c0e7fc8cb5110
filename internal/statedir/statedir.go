// Package statedir is the one description of the directories under the
// runtime state that several owners fill.
//
// Per container (<state>/containers/<id>): the rootfs manager mounts the
// container's root filesystem there, the CRI layer keeps the OCI spec it
// generated, and the pod's shim writes the exit record. Each owner removes
// only what it made; the CRI layer removes the directory with the
// container.
//
// Per image mounted as an image volume (<state>/image-volumes/<hex>, hex
// being the image ID without its "sha256:"): the image volume manager
// mounts the image's layers there, read-only, once for every container
// that mounts the image. A pod with a user namespace has its own mount of
// the image, idmapped with that namespace, for its containers whose image
// volumes carry the pod's ID mappings: <state>/image-volumes/<hex>@<pod
// ID>.
package statedir

import "path/filepath"

// Names inside a container's directory.
const (
	RootfsDir = "rootfs"
	SpecFile  = "config.json"
)

// ImageVolumesDir is the directory of image volume mounts in the state.
const ImageVolumesDir = "image-volumes"

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

// ImageVolumesUnder is the layout of the image volume mounts in the runtime
// state directory state: state/image-volumes.
func ImageVolumesUnder(state string) ImageVolumes {
	return ImageVolumes{Root: filepath.Join(state, ImageVolumesDir)}
}

// ImageVolumes lays out the image volume mount points below Root, e.g.
// /run/skiff/image-volumes. The state is a tmpfs on most hosts, so a
// reboot takes the mount points with the mounts.
type ImageVolumes struct {
	Root string
}

// Mount is where the image whose ID has the hex digest hex is mounted.
// The caller checks that hex is a digest: it becomes a path element.
func (v ImageVolumes) Mount(hex string) string { return filepath.Join(v.Root, hex) }

// PodMount is where the image whose ID has the hex digest hex is mounted
// idmapped with pod's user namespace, for that pod's containers. The
// caller checks that hex and pod are hex digits: they become a path
// element, which "@" keeps apart from every plain mount's.
func (v ImageVolumes) PodMount(hex, pod string) string {
	return filepath.Join(v.Root, hex+"@"+pod)
}
