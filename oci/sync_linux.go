package oci

import (
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/oci/cgroups"
)

// Environment variables naming the fds the init inherits.
const (
	envConfigFD = "_SKIFF_INIT_CONFIG_FD" // pipe: initConfig as JSON, then EOF
	envSyncFD   = "_SKIFF_INIT_SYNC_FD"   // SOCK_SEQPACKET: syncMsg from the init
	envFifoFD   = "_SKIFF_INIT_FIFO_FD"   // start barrier FIFO, opened O_RDWR (create only)
	envMountNS  = "_SKIFF_INIT_MNTNS_FD"  // container's mount namespace (exec only)
	// envResultFD is the start result FIFO, opened O_RDWR (create, with
	// startContainer or poststart hooks): a failed startContainer hook's
	// error is written to it; execve closes it, which Start reads as EOF.
	envResultFD = "_SKIFF_INIT_RESULT_FD"
)

// initConfig is what the parent sends to the init over the config pipe.
type initConfig struct {
	// Exec is set for a process joining a running container.
	Exec bool `json:"exec,omitempty"`
	// Spec is the container's spec (for exec: the container's, for
	// seccomp and defaults), sent as its part the init reads (SpecPart,
	// set by launch.sendConfig; see initSpec); Process is the process to
	// run.
	Spec     *specs.Spec    `json:"-"`
	SpecPart *initSpec      `json:"spec"`
	Process  *specs.Process `json:"process"`
	// Rootfs is the mounted rootfs on the host (create only).
	Rootfs string `json:"rootfs,omitempty"`
	// NewMountNS, NewUTSNS and NewCgroupNS say which namespaces are new.
	// The cgroup namespace is unshared by the init itself after the parent
	// has put it in its cgroup, so that cgroup becomes the namespace root.
	NewMountNS  bool `json:"newMountNS,omitempty"`
	NewUTSNS    bool `json:"newUTSNS,omitempty"`
	NewCgroupNS bool `json:"newCgroupNS,omitempty"`
	// NewNetNS tells the init it may write net.* sysctls.
	NewNetNS bool `json:"newNetNS,omitempty"`
	// MountFDs, when set, has one entry per spec mount: the fd of the
	// detached mount the parent made of a bind mount's source (-1 for
	// other mounts). Set for containers in a user namespace, whose init
	// cannot reach or idmap the sources itself.
	MountFDs []int `json:"mountFDs,omitempty"`
	// TaskFDs are the v1 hierarchies' "tasks" files of the container's
	// cgroup, opened by the parent: the init writes "0" to each, first
	// thing, which moves its main thread (the one that will execve) into
	// the cgroup without the kernel's migration lock. Its other threads
	// end at execve.
	TaskFDs []int `json:"taskFDs,omitempty"`
	// RuntimeHooks makes the init stop before pivot_root and ask the
	// parent (msgHooks) to run the prestart and createRuntime hooks, and
	// wait for msgResume.
	RuntimeHooks bool `json:"runtimeHooks,omitempty"`
	// HookState is the state the createContainer and startContainer hooks
	// get, with the init's host pid, which the init cannot know itself in
	// a new PID namespace.
	HookState *specs.State `json:"hookState,omitempty"`

	// hostCgroups came with "joined" (see cgroupBarrier).
	hostCgroups []cgroups.Mount
}

// syncMsg goes from the init to the parent. "pty" carries the pty master
// as SCM_RIGHTS; "ready" ends a create; "error" carries the failure;
// "hooks" asks the parent to run the runtime-namespace create hooks;
// "configured" says the init read its config, so its Go runtime is up and
// done with its own rlimit changes, and the parent may set the process's
// rlimits (it waits for it, see launch.awaitConfigured). Two
// go the other way: "joined", sent once after the config, when the parent
// has put the init in its cgroup and set its limits, and "resume", the
// answer to "hooks".
type syncMsg struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
	// Pid is the init's host pid, from the pre-runtime stage (package
	// nsenter) when it forks the init into a new PID namespace.
	Pid int `json:"pid,omitempty"`
	// CgroupMounts, in "joined", are the host's cgroup hierarchies
	// (hostCgroupMounts), sent when the spec mounts a cgroup filesystem.
	CgroupMounts []cgroups.Mount `json:"cgroupMounts,omitempty"`
}

const (
	msgReady  = "ready"
	msgError  = "error"
	msgPty    = "pty"
	msgHooks  = "hooks"
	msgResume = "resume"
	msgJoined = "joined"
	// msgConfigured: see syncMsg.
	msgConfigured = "configured"
)

// awaitParent reads the parent's next message on the seqpacket socket fd
// and fails unless it is of type want; what names the wait in errors.
func awaitParent(fd int, want, what string) (syncMsg, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return syncMsg{}, fmt.Errorf("%s: %w", what, err)
		}
		var m syncMsg
		if n == 0 || json.Unmarshal(buf[:n], &m) != nil || m.Type != want {
			return syncMsg{}, fmt.Errorf("%s: the runtime gave up", what)
		}
		return m, nil
	}
}

// sendSync writes one message (and optionally one fd) on the seqpacket
// socket fd.
func sendSync(fd int, m syncMsg, passFD int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if passFD >= 0 {
		oob = unix.UnixRights(passFD)
	}
	if err := unix.Sendmsg(fd, b, oob, nil, 0); err != nil {
		return fmt.Errorf("send %s message to parent: %w", m.Type, err)
	}
	return nil
}
