// Package spec turns a CRI ContainerConfig, its pod's config and its image's
// config into the OCI runtime spec the executor runs. It holds Kubernetes'
// container semantics (command resolution, users, capabilities, mounts,
// namespaces, resources) in one place so they can be tested without a kernel.
package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
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
		s.Linux.MaskedPaths = DefaultMaskedPaths
		if p := sc.GetMaskedPaths(); len(p) > 0 {
			s.Linux.MaskedPaths = p
		}
		s.Linux.ReadonlyPaths = DefaultReadonlyPaths
		if p := sc.GetReadonlyPaths(); len(p) > 0 {
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

// openInRoot opens a file of the container's rootfs without following
// symlinks out of it; a missing file is not an error (nil reader).
func openInRoot(rootfs, path string) (io.ReadCloser, error) {
	if rootfs == "" {
		return nil, nil
	}
	p, err := securejoin.SecureJoin(rootfs, path)
	if err != nil {
		return nil, fmt.Errorf("resolve %s in rootfs: %w", path, err)
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

func resolveUser(rootfs, imageUser string, sc *runtimeapi.LinuxContainerSecurityContext) (specs.User, error) {
	userSpec := imageUser
	switch {
	case sc.GetRunAsUser() != nil:
		userSpec = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	case sc.GetRunAsUsername() != "":
		userSpec = sc.GetRunAsUsername()
	}
	// A RunAsUser/RunAsUsername replaces the image's user and group; the
	// group then comes from the passwd entry or RunAsGroup.
	if sc.GetRunAsUser() != nil || sc.GetRunAsUsername() != "" {
		userSpec, _, _ = strings.Cut(userSpec, ":")
	}
	if userSpec == "" {
		userSpec = "0"
	}
	passwd, err := openInRoot(rootfs, "/etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	if passwd != nil {
		defer passwd.Close()
	}
	group, err := openInRoot(rootfs, "/etc/group")
	if err != nil {
		return specs.User{}, err
	}
	if group != nil {
		defer group.Close()
	}
	var pr, gr io.Reader
	if passwd != nil {
		pr = passwd
	}
	if group != nil {
		gr = group
	}
	eu, err := user.GetExecUser(userSpec, &user.ExecUser{Uid: 0, Gid: 0}, pr, gr)
	if err != nil {
		return specs.User{}, errdefs.InvalidArgument("user %q: %v", userSpec, err)
	}
	u := specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	if g := sc.GetRunAsGroup(); g != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			return specs.User{}, errdefs.InvalidArgument("run_as_group needs run_as_user or run_as_username")
		}
		u.GID = uint32(g.GetValue())
	}
	seen := map[uint32]bool{}
	add := func(g uint32) {
		if !seen[g] {
			seen[g] = true
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	add(u.GID)
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict {
		for _, g := range eu.Sgids {
			add(uint32(g))
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		add(uint32(g))
	}
	return u, nil
}

// knownCapabilities lists the capabilities "ALL" grants.
func knownCapabilities() []string {
	return append([]string(nil), allCaps...)
}

func capName(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "ALL" || strings.HasPrefix(s, "CAP_") {
		return s
	}
	return "CAP_" + s
}

// Capabilities applies CRI add/drop lists (with "ALL") to the default set.
// The result goes into bounding, effective and permitted; ambient ones also
// into inheritable, as the kernel requires.
func Capabilities(privileged bool, c *runtimeapi.Capability) (*specs.LinuxCapabilities, error) {
	set := map[string]bool{}
	if privileged {
		for _, n := range knownCapabilities() {
			set[n] = true
		}
	} else {
		for _, n := range DefaultCapabilities {
			set[n] = true
		}
	}
	valid := map[string]bool{}
	for _, n := range knownCaps {
		valid[n] = true
	}
	check := func(n string) error {
		if n != "ALL" && !valid[n] {
			return errdefs.InvalidArgument("unknown capability %q", n)
		}
		return nil
	}
	if !privileged {
		for _, a := range c.GetAddCapabilities() {
			if capName(a) == "ALL" {
				for _, n := range knownCapabilities() {
					set[n] = true
				}
			}
		}
		for _, d := range c.GetDropCapabilities() {
			if capName(d) == "ALL" {
				set = map[string]bool{}
			}
		}
		for _, a := range c.GetAddCapabilities() {
			n := capName(a)
			if err := check(n); err != nil {
				return nil, err
			}
			if n != "ALL" {
				set[n] = true
			}
		}
		for _, d := range c.GetDropCapabilities() {
			n := capName(d)
			if err := check(n); err != nil {
				return nil, err
			}
			if n != "ALL" {
				delete(set, n)
			}
		}
	}
	list := make([]string, 0, len(set))
	for n := range set {
		list = append(list, n)
	}
	sort.Strings(list)
	caps := &specs.LinuxCapabilities{Bounding: list, Effective: list, Permitted: list}
	for _, a := range c.GetAddAmbientCapabilities() {
		n := capName(a)
		if err := check(n); err != nil || n == "ALL" {
			return nil, errdefs.InvalidArgument("ambient capability %q is not a capability name", a)
		}
		if !set[n] {
			return nil, errdefs.InvalidArgument("ambient capability %s is not in the container's bounding set", n)
		}
		caps.Ambient = append(caps.Ambient, n)
		caps.Inheritable = append(caps.Inheritable, n)
	}
	return caps, nil
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
	return nil
}

// Mounts returns the container's mounts, sorted so parents come before their
// children, and the rootfs propagation the mounts need.
func Mounts(in Input, privileged, readonlyRoot bool) ([]specs.Mount, string, error) {
	// sysfs and the cgroup filesystem are writable only for privileged
	// containers.
	sysMode := "ro"
	if privileged {
		sysMode = "rw"
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysMode}},
		// The container's own cgroups, where JVMs, Go, Node.js and .NET
		// read their limits.
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysMode}},
	}
	if in.PodFiles.Shm != "" {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: in.PodFiles.Shm, Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}})
	} else {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	podFile := func(dst, src string) {
		if src == "" {
			return
		}
		opts := []string{"rbind", "rprivate"}
		if readonlyRoot {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	hostNet := in.Pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		podFile("/etc/hostname", in.PodFiles.Hostname)
	}
	podFile("/etc/hosts", in.PodFiles.Hosts)
	podFile("/etc/resolv.conf", in.PodFiles.ResolvConf)

	rootProp := ""
	user := map[string]bool{}
	var userMounts []specs.Mount
	for _, m := range in.Container.GetMounts() {
		if m.GetImage() != nil && m.GetImage().GetImage() != "" {
			return nil, "", errdefs.Unimplemented("image volume mounts (%s) are not supported", m.ContainerPath)
		}
		if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
			return nil, "", errdefs.Unimplemented("id-mapped mounts (%s) are not supported", m.ContainerPath)
		}
		dst := filepath.Clean(m.ContainerPath)
		if !filepath.IsAbs(dst) {
			return nil, "", errdefs.InvalidArgument("mount container path %q is not absolute", m.ContainerPath)
		}
		if m.HostPath == "" {
			return nil, "", errdefs.InvalidArgument("mount %s has no host path", dst)
		}
		src, err := hostPath(m.HostPath)
		if err != nil {
			return nil, "", err
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := ensurePropagation(src, false); err != nil {
				return nil, "", err
			}
			opts = append(opts, "rslave")
			if rootProp == "" {
				rootProp = "rslave"
			}
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if !privileged {
				return nil, "", errdefs.InvalidArgument("bidirectional mount propagation of %s needs a privileged container", dst)
			}
			if err := ensurePropagation(src, true); err != nil {
				return nil, "", err
			}
			opts = append(opts, "rshared")
			rootProp = "rshared"
		default:
			return nil, "", errdefs.InvalidArgument("mount %s: unknown propagation %v", dst, m.Propagation)
		}
		if m.RecursiveReadOnly {
			if !m.Readonly {
				return nil, "", errdefs.InvalidArgument("mount %s: recursive read-only needs readonly", dst)
			}
			if m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, "", errdefs.InvalidArgument("mount %s: recursive read-only needs private propagation", dst)
			}
			opts = append(opts, "rro")
		} else if m.Readonly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		user[dst] = true
		userMounts = append(userMounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	// A container mount replaces a default one at the same place (for
	// example a volume on /etc/hosts or /dev/shm).
	out := mounts[:0]
	for _, m := range mounts {
		if !user[m.Destination] {
			out = append(out, m)
		}
	}
	out = append(out, userMounts...)
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i].Destination) < depth(out[j].Destination) })
	return out, rootProp, nil
}

func depth(p string) int {
	p = filepath.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// hostPath resolves symlinks of a volume's host path and, like other
// runtimes, creates a missing path as a directory.
func hostPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", errdefs.InvalidArgument("mount host path %q is not absolute", p)
	}
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("create mount host path %s: %w", p, err)
		}
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("resolve mount host path %s: %w", p, err)
	}
	return r, nil
}

func setDevices(s *specs.Spec, devs []*runtimeapi.Device, privileged bool) error {
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		hostDevs, err := hostDevices("/dev")
		if err != nil {
			return err
		}
		s.Linux.Devices = append(s.Linux.Devices, hostDevs...)
	} else {
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, defaultDeviceRules...)
	}
	for _, d := range devs {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return errdefs.InvalidArgument("device %s: permissions %q must be made of r, w and m", d.HostPath, d.Permissions)
		}
		found, err := devicesAt(d.HostPath, d.ContainerPath)
		if err != nil {
			return err
		}
		for _, dev := range found {
			s.Linux.Devices = append(s.Linux.Devices, dev)
			maj, min := dev.Major, dev.Minor
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: &maj, Minor: &min, Access: perms,
			})
		}
	}
	return nil
}

func i64(v int64) *int64 { return &v }

// defaultDeviceRules allow the default devices the executor creates and
// mknod of any device (creating one is harmless without access to it).
var defaultDeviceRules = []specs.LinuxDeviceCgroup{
	{Allow: true, Type: "c", Major: i64(-1), Minor: i64(-1), Access: "m"},
	{Allow: true, Type: "b", Major: i64(-1), Minor: i64(-1), Access: "m"},
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},    // null
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},    // zero
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(7), Access: "rwm"},    // full
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},    // random
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},    // urandom
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},    // tty
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(1), Access: "rwm"},    // console
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"},    // ptmx
	{Allow: true, Type: "c", Major: i64(136), Minor: i64(-1), Access: "rwm"}, // pts
	{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "rwm"}, // tun
}

// Resources converts CRI resources for a cgroup update (UpdateContainerResources).
func Resources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	s := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	if err := setResources(s, r); err != nil {
		return nil, err
	}
	return s.Linux.Resources, nil
}

func setResources(s *specs.Spec, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	res := s.Linux.Resources
	cpu := &specs.LinuxCPU{}
	if r.CpuShares > 0 {
		v := uint64(r.CpuShares)
		cpu.Shares = &v
	}
	if r.CpuQuota > 0 {
		cpu.Quota = i64(r.CpuQuota)
	}
	if r.CpuPeriod > 0 {
		v := uint64(r.CpuPeriod)
		cpu.Period = &v
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if *cpu != (specs.LinuxCPU{}) {
		res.CPU = cpu
	}
	if r.MemoryLimitInBytes < 0 {
		return errdefs.InvalidArgument("memory limit %d is negative", r.MemoryLimitInBytes)
	}
	if r.MemoryLimitInBytes > 0 {
		res.Memory = &specs.LinuxMemory{Limit: i64(r.MemoryLimitInBytes)}
		if r.MemorySwapLimitInBytes > 0 {
			if r.MemorySwapLimitInBytes < r.MemoryLimitInBytes {
				return errdefs.InvalidArgument("memory+swap limit %d is below the memory limit %d", r.MemorySwapLimitInBytes, r.MemoryLimitInBytes)
			}
			res.Memory.Swap = i64(r.MemorySwapLimitInBytes)
		}
	}
	for _, h := range r.HugepageLimits {
		res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		res.Unified = r.Unified
	}
	if r.OomScoreAdj != 0 {
		if r.OomScoreAdj < -1000 || r.OomScoreAdj > 1000 {
			return errdefs.InvalidArgument("oom_score_adj %d is outside [-1000, 1000]", r.OomScoreAdj)
		}
		v := int(r.OomScoreAdj)
		s.Process.OOMScoreAdj = &v
	}
	return nil
}

func seccompFor(p SeccompProfiles, sc *runtimeapi.LinuxContainerSecurityContext, privileged bool, caps []string) (*specs.LinuxSeccomp, error) {
	typ, ref := runtimeapi.SecurityProfile_Unconfined, ""
	if prof := sc.GetSeccomp(); prof != nil {
		typ, ref = prof.ProfileType, prof.LocalhostRef
	}
	if privileged || typ == runtimeapi.SecurityProfile_Unconfined {
		return nil, nil
	}
	if p == nil {
		return nil, errdefs.Unimplemented("seccomp profiles are not available in this build")
	}
	switch typ {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return p.RuntimeDefault(caps), nil
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return nil, errdefs.InvalidArgument("localhost seccomp profile %q must be an absolute path", ref)
		}
		prof, err := p.Load(ref)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, errdefs.NotFound("seccomp profile %s", ref)
			}
			return nil, errdefs.InvalidArgument("seccomp profile %s: %v", ref, err)
		}
		return prof, nil
	}
	return nil, errdefs.InvalidArgument("unknown seccomp profile type %v", typ)
}
