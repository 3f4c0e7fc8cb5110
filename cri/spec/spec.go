// Package spec turns a CRI ContainerConfig, its pod's config and its image's
// config into the OCI runtime spec the executor runs. It holds Kubernetes'
// container semantics (command resolution, users, capabilities, mounts,
// namespaces, resources) in one place so they can be tested without a kernel.
package spec

import (
	"path/filepath"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// Annotations set on every container spec, as the kubelet's other runtimes do,
// so tools reading the spec can tell pods and containers apart.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName   = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID    = "io.kubernetes.cri.sandbox-uid"
	AnnotationContainerName = "io.kubernetes.cri.container-name"
	AnnotationImageName     = "io.kubernetes.cri.image-name"
)

// DefaultPath is used when the image sets no PATH.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCapabilities is the capability set of an unprivileged container, the
// same set containerd and CRI-O grant by default.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths hide kernel interfaces that leak host information.
var DefaultMaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
	"/sys/devices/virtual/powercap", "/proc/interrupts",
}

// DefaultReadonlyPaths stay visible but cannot be written.
var DefaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// SeccompProfiles resolves seccomp profiles; the executor's seccomp package
// provides it. Nil means seccomp requests other than Unconfined fail.
type SeccompProfiles interface {
	// RuntimeDefault is the default profile for a process with these capabilities.
	RuntimeDefault(caps []string) *specs.LinuxSeccomp
	// Load reads a Localhost profile from an absolute path on the node.
	Load(path string) (*specs.LinuxSeccomp, error)
}

// PodFiles are the per-pod files bind-mounted into every container.
type PodFiles struct {
	Hostname, Hosts, ResolvConf, Shm string
}

// Namespaces are the pod's pinned namespace files; "" means the host's.
type Namespaces struct {
	Net, IPC, UTS, PID string
	// User is the pod's own user namespace, owner of its net, ipc and uts
	// namespaces.
	User string
}

// Input is everything a container spec is generated from.
type Input struct {
	ID        string
	SandboxID string
	Pod       *runtimeapi.PodSandboxConfig
	Container *runtimeapi.ContainerConfig
	// ImageName is the reference the container was created from.
	ImageName string
	Image     ocispec.ImageConfig
	// Rootfs is the container's mounted root filesystem; users and groups are
	// looked up in its /etc/passwd and /etc/group.
	Rootfs      string
	PodNS       Namespaces
	PodFiles    PodFiles
	CgroupsPath string
	// TargetPIDNS is the PID namespace path of the target container when the
	// container asks for NamespaceMode_TARGET.
	TargetPIDNS string
	Seccomp     SeccompProfiles
	// CgroupV2 adds a private cgroup namespace, as other runtimes do on
	// unified hosts.
	CgroupV2 bool
	// ImageVolumes are the sources of the container's image volume
	// mounts, by clean container path. A container with image volume
	// mounts but none here is refused as unsupported.
	ImageVolumes map[string]ImageVolume
}

// ImageVolume is the source the caller mounted for an image volume mount.
type ImageVolume struct {
	// Source is the image's shared read-only mount, or the path of the
	// mount's image_sub_path inside it.
	Source string
	// IDMapped says that Source is idmapped with the pod's user namespace
	// already (the caller mounted the image's layers so, for a mount with
	// the pod's ID mappings): the bind then carries no ID mappings, since
	// the executor would idmap it again, which the kernel refuses for an
	// idmapped mount (and for an overlay at all).
	IDMapped bool
}

// Generate builds the OCI spec for in. Errors caused by the request are
// errdefs.ErrInvalidArgument so the CRI edge reports them as such.
func Generate(in Input) (*specs.Spec, error) {
	c := in.Container
	if c == nil || c.Metadata == nil {
		return nil, errdefs.InvalidArgument("container config with metadata is required")
	}
	if in.Pod == nil {
		return nil, errdefs.InvalidArgument("pod sandbox config is required")
	}
	lc := c.GetLinux()
	sc := lc.GetSecurityContext()
	podSC := in.Pod.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !podSC.GetPrivileged() {
		return nil, errdefs.InvalidArgument("container %q is privileged but its pod sandbox is not", c.Metadata.Name)
	}

	s := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: in.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Hostname: in.Pod.GetHostname(),
		Annotations: map[string]string{
			AnnotationContainerType: "container",
			AnnotationSandboxID:     in.SandboxID,
			AnnotationSandboxName:   in.Pod.GetMetadata().GetName(),
			AnnotationSandboxNS:     in.Pod.GetMetadata().GetNamespace(),
			AnnotationSandboxUID:    in.Pod.GetMetadata().GetUid(),
			AnnotationContainerName: c.Metadata.Name,
			AnnotationImageName:     in.ImageName,
		},
		Process: &specs.Process{
			Terminal:        c.Tty,
			NoNewPrivileges: sc.GetNoNewPrivs(),
		},
		Linux: &specs.Linux{
			CgroupsPath: in.CgroupsPath,
			Resources:   &specs.LinuxResources{},
		},
	}
	for k, v := range c.Annotations {
		if _, reserved := s.Annotations[k]; !reserved {
			s.Annotations[k] = v
		}
	}

	args, err := Args(c.Command, c.Args, in.Image.Entrypoint, in.Image.Cmd)
	if err != nil {
		return nil, err
	}
	s.Process.Args = args
	s.Process.Cwd = c.WorkingDir
	if s.Process.Cwd == "" {
		s.Process.Cwd = in.Image.WorkingDir
	}
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	}
	if !filepath.IsAbs(s.Process.Cwd) {
		return nil, errdefs.InvalidArgument("working dir %q is not absolute", s.Process.Cwd)
	}
	s.Process.Env = Env(in.Pod.GetHostname(), c.Tty, in.Image.Env, c.Envs)

	u, err := resolveUser(in.Rootfs, in.Image.User, sc)
	if err != nil {
		return nil, err
	}
	s.Process.User = u

	caps, err := Capabilities(privileged, sc.GetCapabilities())
	if err != nil {
		return nil, err
	}
	s.Process.Capabilities = caps

	if err := setNamespaces(s, in, sc.GetNamespaceOptions()); err != nil {
		return nil, err
	}
	mounts, rootProp, err := Mounts(in, privileged, s.Root.Readonly)
	if err != nil {
		return nil, err
	}
	s.Mounts = mounts
	s.Linux.RootfsPropagation = rootProp

	if err := setDevices(s, c.Devices, privileged); err != nil {
		return nil, err
	}
	if err := setResources(s, lc.GetResources()); err != nil {
		return nil, err
	}

	if !privileged {
		// The kubelet always lists the paths for the default procMount
		// and lists none for procMount: Unmasked, which it allows only in
		// a user namespace. An empty list (protobuf cannot tell it from
		// none) therefore unmasks a container in a user namespace, as
		// containerd does; elsewhere it gets the defaults, for CRI clients
		// that send nothing.
		unmasked := podUserNS(in.Pod) != nil
		s.Linux.MaskedPaths = DefaultMaskedPaths
		if p := sc.GetMaskedPaths(); len(p) > 0 || unmasked {
			s.Linux.MaskedPaths = p
		}
		s.Linux.ReadonlyPaths = DefaultReadonlyPaths
		if p := sc.GetReadonlyPaths(); len(p) > 0 || unmasked {
			s.Linux.ReadonlyPaths = p
		}
	}
	seccomp, err := seccompFor(in.Seccomp, sc, privileged, caps.Bounding)
	if err != nil {
		return nil, err
	}
	s.Linux.Seccomp = seccomp
	return s, nil
}

// Args resolves the process arguments the way the kubelet documents:
// Command replaces the image's Entrypoint and drops its Cmd; Args replace Cmd.
func Args(command, args, entrypoint, cmd []string) ([]string, error) {
	var out []string
	switch {
	case len(command) > 0:
		out = append(append(out, command...), args...)
	case len(args) > 0:
		out = append(append(out, entrypoint...), args...)
	default:
		out = append(append(out, entrypoint...), cmd...)
	}
	if len(out) == 0 || out[0] == "" {
		return nil, errdefs.InvalidArgument("no command specified: the container config and the image set neither a command nor an entrypoint")
	}
	return out, nil
}

// Env merges environment variables: HOSTNAME, the image's, then the
// container's, later ones replacing earlier keys in place.
func Env(hostname string, tty bool, image []string, container []*runtimeapi.KeyValue) []string {
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	set("PATH", DefaultPath)
	if hostname != "" {
		set("HOSTNAME", hostname)
	}
	if tty {
		set("TERM", "xterm")
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, kv := range container {
		if kv.GetKey() == "" {
			continue
		}
		set(kv.Key, string(kv.Value))
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+vals[k])
	}
	return out
}

func setNamespaces(s *specs.Spec, in Input, ns *runtimeapi.NamespaceOption) error {
	podNS := in.Pod.GetLinux().GetSecurityContext().GetNamespaceOptions()
	add := func(t specs.LinuxNamespaceType, path string) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	}
	add(specs.MountNamespace, "")
	if podNS.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		if in.PodNS.Net == "" {
			return errdefs.FailedPrecondition("pod has no network namespace")
		}
		add(specs.NetworkNamespace, in.PodNS.Net)
	}
	if podNS.GetIpc() != runtimeapi.NamespaceMode_NODE {
		if in.PodNS.IPC == "" {
			return errdefs.FailedPrecondition("pod has no IPC namespace")
		}
		add(specs.IPCNamespace, in.PodNS.IPC)
	}
	// The UTS namespace follows the network one, as in the kubelet's model:
	// host-network pods see the node's hostname.
	if podNS.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		if in.PodNS.UTS == "" {
			return errdefs.FailedPrecondition("pod has no UTS namespace")
		}
		add(specs.UTSNamespace, in.PodNS.UTS)
	} else {
		s.Hostname = ""
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		// POD is also the proto default, which minimal clients send for
		// pods that share no PID namespace: such a container gets a
		// private one, as containerd and CRI-O give it.
		add(specs.PIDNamespace, in.PodNS.PID)
	case runtimeapi.NamespaceMode_TARGET:
		if in.TargetPIDNS == "" {
			return errdefs.InvalidArgument("target container %q for the PID namespace is not running", ns.GetTargetId())
		}
		add(specs.PIDNamespace, in.TargetPIDNS)
	default:
		add(specs.PIDNamespace, "")
	}
	if in.CgroupV2 {
		add(specs.CgroupNamespace, "")
	}
	return setUserNamespace(s, in, ns.GetUsernsOptions())
}

// setUserNamespace puts the container in its pod's user namespace, when
// the pod has one. The container's own userns_options (the kubelet repeats
// the pod's) may not ask for another.
func setUserNamespace(s *specs.Spec, in Input, ns *runtimeapi.UserNamespace) error {
	pod := podUserNS(in.Pod)
	if pod == nil {
		if ns != nil && ns.GetMode() != runtimeapi.NamespaceMode_NODE {
			return errdefs.InvalidArgument("container asks for a user namespace (mode %s) in a pod that has none", ns.GetMode())
		}
		return nil
	}
	if ns != nil && !sameUserNS(ns, pod) {
		return errdefs.InvalidArgument("container's user namespace (mode %s) differs from its pod's: a pod's containers share the pod's", ns.GetMode())
	}
	if in.PodNS.User == "" {
		return errdefs.FailedPrecondition("pod has no user namespace")
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: in.PodNS.User})
	s.Linux.UIDMappings = IDMappings(pod.GetUids())
	s.Linux.GIDMappings = IDMappings(pod.GetGids())
	return nil
}

// podUserNS is the pod's user namespace request, nil for the host's.
func podUserNS(pod *runtimeapi.PodSandboxConfig) *runtimeapi.UserNamespace {
	u := pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if u.GetMode() != runtimeapi.NamespaceMode_POD {
		return nil
	}
	return u
}

func sameUserNS(a, b *runtimeapi.UserNamespace) bool {
	return a.GetMode() == b.GetMode() && sameIDs(a.GetUids(), b.GetUids()) && sameIDs(a.GetGids(), b.GetGids())
}

func sameIDs(a, b []*runtimeapi.IDMapping) bool {
	return slices.Equal(IDMappings(a), IDMappings(b))
}

// IDMappings converts CRI ID mappings to the runtime spec's.
func IDMappings(m []*runtimeapi.IDMapping) []specs.LinuxIDMapping {
	if len(m) == 0 {
		return nil
	}
	out := make([]specs.LinuxIDMapping, len(m))
	for i, x := range m {
		out[i] = specs.LinuxIDMapping{ContainerID: x.GetContainerId(), HostID: x.GetHostId(), Size: x.GetLength()}
	}
	return out
}
