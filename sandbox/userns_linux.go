package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// IDMap maps Size consecutive IDs of a user namespace, from ContainerID,
// onto the host's IDs from HostID: one line of /proc/<pid>/uid_map.
type IDMap struct {
	ContainerID, HostID, Size uint32
}

func (m IDMap) String() string {
	return fmt.Sprintf("(container ID %d, host ID %d, size %d)", m.ContainerID, m.HostID, m.Size)
}

// UserNS is the ID mapping of a pod's own user namespace (a pod with
// hostUsers: false): exactly one UID range and one GID range, each from
// container ID 0, as the kubelet sends them.
type UserNS struct {
	UIDs, GIDs []IDMap
}

// hostRoot returns the host UID and GID of the pod's root. Only for a
// UserNS that passed validate.
func (u UserNS) hostRoot() (uid, gid uint32) {
	return u.UIDs[0].HostID, u.GIDs[0].HostID
}

// validate refuses mappings the kernel would accept but that Skiff does not
// run a pod with. One range per kind is what the kubelet sends and what the
// pod's files are owned by (the host IDs of the pod's root); containerd
// accepts no more either. A range that includes host ID 0 would make the
// pod's root the node's root, which defeats the point: the kubelet never
// allocates one (its ranges are multiples of 65536 from 65536).
func (u UserNS) validate() error {
	if err := validateIDMaps("UID", u.UIDs); err != nil {
		return err
	}
	return validateIDMaps("GID", u.GIDs)
}

func validateIDMaps(kind string, maps []IDMap) error {
	if len(maps) != 1 {
		return errdefs.InvalidArgument("pod user namespace: %d %s mappings, want exactly one range from container ID 0", len(maps), kind)
	}
	m := maps[0]
	switch {
	case m.Size == 0:
		return errdefs.InvalidArgument("pod user namespace: %s mapping %v is empty", kind, m)
	case m.ContainerID != 0:
		return errdefs.InvalidArgument("pod user namespace: %s mapping %v must start at container ID 0 (the pod's root)", kind, m)
	case uint64(m.HostID)+uint64(m.Size) > math.MaxUint32:
		// The kernel's limit too: the end of a range must fit in 32 bits,
		// and ID 4294967295 is the invalid ID.
		return errdefs.InvalidArgument("pod user namespace: %s mapping %v runs past host ID %d", kind, m, uint32(math.MaxUint32-1))
	case m.HostID == 0:
		return errdefs.InvalidArgument("pod user namespace: %s mapping %v includes host ID 0, which would make the pod's root the node's root", kind, m)
	}
	return nil
}

// checkPodUserNS is the rule for a pod with its own user namespace: valid
// mappings (see UserNS.validate), and none of the node's namespaces, which
// the pod's root could not use (the kubelet's API validation forbids
// hostNetwork, hostIPC and hostPID with hostUsers: false).
func checkPodUserNS(cfg PodConfig) error {
	if cfg.UserNS == nil {
		return nil
	}
	switch {
	case cfg.HostNetwork:
		return errdefs.InvalidArgument("pod user namespace: a pod on the node's network (hostNetwork) cannot have its own user namespace (hostUsers: false)")
	case cfg.HostIPC:
		return errdefs.InvalidArgument("pod user namespace: a pod sharing the node's IPC namespace (hostIPC) cannot have its own user namespace (hostUsers: false)")
	}
	return cfg.UserNS.validate()
}

// holderMode is the argument that starts the skiff-shim binary as a
// namespace holder (cmd/skiff-shim's "nshold" mode).
const holderMode = "nshold"

// holderExitTimeout bounds the wait for the holder to exit once its stdin is
// closed; it exits at once unless it is not a holder at all.
const holderExitTimeout = 10 * time.Second

// CreateUserNamespaces is CreateNamespaces for a pod with its own user
// namespace: it creates a user namespace with the mappings of userns, and
// new namespaces of kinds owned by it, and pins them all under dir, the user
// namespace at dir/user. The pod's root then has every capability in its
// own network namespace (it can configure interfaces and mount sysfs there)
// and none outside.
//
// Why a holder process: the kernel refuses CLONE_NEWUSER, by unshare as by
// setns, from a multi-threaded process, and a Go program always is one. A
// new process can be cloned into new namespaces, though, and when one clone
// creates a user namespace with others, the user namespace comes first and
// owns them. So holder, the skiff-shim binary, is started as "skiff-shim
// nshold" with CLONE_NEWUSER and the kinds' CLONE_NEW* flags; Go writes its
// uid_map and gid_map from this process before the child execs. The holder
// only keeps the namespaces alive until they are pinned from /proc/<pid>/ns:
// it blocks reading its stdin, a pipe from this process, and exits at EOF,
// which also comes if this process dies. When CreateUserNamespaces returns,
// it has exited and been reaped, whatever the outcome.
//
// Root in the host's user namespace keeps every capability over namespaces
// owned by a child user namespace, so, as in CreateNamespaces, the loopback
// is brought up and the hostname set on a throw-away thread that joins the
// pinned net and uts namespaces without joining the user namespace.
//
// The holder keeps this process's credentials (host UID 0, with no
// capability outside its new user namespace): the mappings apply to the
// pod's processes, which set their IDs inside it. No holder configured fails
// with ErrFailedPrecondition (a node configuration error), invalid mappings
// with ErrInvalidArgument. On failure nothing is left mounted and no process
// is left.
func CreateUserNamespaces(ctx context.Context, dir string, kinds NamespaceSet, hostname string, userns UserNS, holder string) (Namespaces, error) {
	if err := ctx.Err(); err != nil {
		return Namespaces{}, err
	}
	if kinds&PIDNS != 0 {
		return Namespaces{}, errdefs.InvalidArgument("a pod PID namespace needs its init process: start it with CLONE_NEWPID and use PinPIDNamespace")
	}
	if len(hostname) > maxHostname {
		return Namespaces{}, errdefs.InvalidArgument("hostname %q longer than %d bytes", hostname, maxHostname)
	}
	if err := userns.validate(); err != nil {
		return Namespaces{}, err
	}
	if holder == "" {
		return Namespaces{}, errdefs.FailedPrecondition("pod user namespace: no namespace holder binary (skiff-shim) is configured")
	}
	flags, todo := selectKinds(kinds)
	pins := append([]nsKind{userKind}, todo...)
	if err := createMountTargets(dir, pins); err != nil {
		return Namespaces{}, err
	}
	if err := holdAndPin(ctx, dir, flags, pins, hostname, userns, holder); err != nil {
		removeNamespaceFiles(dir, pins)
		return Namespaces{}, err
	}
	ns := Namespaces{User: filepath.Join(dir, userKind.name)}
	for _, k := range todo {
		*ns.ptr(k.set) = filepath.Join(dir, k.name)
	}
	return ns, nil
}

// holdAndPin starts the holder in the new namespaces, pins them at dir,
// sets them up and ends the holder. The holder is gone when it returns.
func holdAndPin(ctx context.Context, dir string, flags int, pins []nsKind, hostname string, userns UserNS, holder string) error {
	cmd := exec.Command(holder, holderMode)
	cmd.Dir = "/"
	// Nothing of the daemon's environment; one P is all it needs.
	cmd.Env = []string{"GOMAXPROCS=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("namespace holder %s: %w", holder, err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 uintptr(unix.CLONE_NEWUSER | flags),
		UidMappings:                sysIDMaps(userns.UIDs),
		GidMappings:                sysIDMaps(userns.GIDs),
		GidMappingsEnableSetgroups: true,
	}
	if err := cmd.Start(); err != nil {
		_ = stdin.Close()
		return fmt.Errorf("start namespace holder %s: %w", holder, err)
	}
	if err := pinHeld(dir, cmd.Process.Pid, flags, pins, hostname); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	return endHolder(ctx, cmd, stdin, &stderr)
}

// pinHeld bind-mounts the namespaces of the holder pid onto their pins under
// dir, then brings the loopback up and sets the hostname in them. The
// holder is an unreaped child of this process, so its PID cannot be reused
// meanwhile; if it has died, its /proc/<pid>/ns entries are gone and the
// mounts fail rather than pin anything else.
func pinHeld(dir string, pid, flags int, pins []nsKind, hostname string) error {
	for _, k := range pins {
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, k.proc)
		dst := filepath.Join(dir, k.name)
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return &os.PathError{Op: "mount " + src, Path: dst, Err: err}
		}
	}
	var pinned Namespaces
	if flags&unix.CLONE_NEWNET != 0 {
		pinned.Net = filepath.Join(dir, "net")
	}
	if flags&unix.CLONE_NEWUTS != 0 {
		pinned.UTS = filepath.Join(dir, "uts")
	}
	return onThrowawayThread(func() error {
		if err := pinned.join(); err != nil {
			return err
		}
		return initNamespaces(flags, hostname)
	})
}

// endHolder closes the holder's stdin and waits for it to exit, killing it
// if it does not within holderExitTimeout or ctx ends first.
func endHolder(ctx context.Context, cmd *exec.Cmd, stdin io.Closer, stderr *bytes.Buffer) error {
	_ = stdin.Close()
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	timer := time.NewTimer(holderExitTimeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-waitc:
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-waitc
		err = fmt.Errorf("still running %v after its stdin was closed; killed", holderExitTimeout)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waitc
		err = ctx.Err()
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return fmt.Errorf("namespace holder %s: %w", cmd.Path, err)
	}
	return nil
}

func sysIDMaps(maps []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, m := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
