package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		command, args, entry, cmd []string
		want                      []string
		wantErr                   bool
	}{
		{name: "image only", entry: []string{"/ep"}, cmd: []string{"a"}, want: []string{"/ep", "a"}},
		{name: "cmd only", cmd: []string{"sh", "-c", "x"}, want: []string{"sh", "-c", "x"}},
		{name: "args replace cmd", entry: []string{"/ep"}, cmd: []string{"a"}, args: []string{"b"}, want: []string{"/ep", "b"}},
		{name: "command drops entrypoint and cmd", entry: []string{"/ep"}, cmd: []string{"a"}, command: []string{"/c"}, want: []string{"/c"}},
		{name: "command with args", command: []string{"/c"}, args: []string{"x", "y"}, cmd: []string{"a"}, want: []string{"/c", "x", "y"}},
		{name: "nothing", wantErr: true},
		{name: "empty program", command: []string{""}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Args(tc.command, tc.args, tc.entry, tc.cmd)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Args = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	got := Env("pod1", true, []string{"PATH=/bin", "A=1", "B=2"}, []*runtimeapi.KeyValue{
		{Key: "B", Value: []byte("3")}, {Key: "C", Value: []byte("x=y")}, {Key: ""},
	})
	want := []string{"PATH=/bin", "HOSTNAME=pod1", "TERM=xterm", "A=1", "B=3", "C=x=y"}
	if !slices.Equal(got, want) {
		t.Fatalf("Env = %q, want %q", got, want)
	}
	if got := Env("", false, nil, nil); !slices.Equal(got, []string{"PATH=" + DefaultPath}) {
		t.Fatalf("default env = %q", got)
	}
}

func TestCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name       string
		privileged bool
		c          *runtimeapi.Capability
		has, not   []string
		all        bool
		wantErr    bool
	}{
		{name: "default", has: []string{"CAP_CHOWN", "CAP_KILL"}, not: []string{"CAP_SYS_ADMIN"}},
		{name: "add and drop", c: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}, DropCapabilities: []string{"chown"}},
			has: []string{"CAP_SYS_ADMIN"}, not: []string{"CAP_CHOWN"}},
		{name: "add all", c: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}, all: true},
		{name: "drop all add one", c: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_ADMIN"}},
			has: []string{"CAP_NET_ADMIN"}, not: []string{"CAP_CHOWN", "CAP_KILL"}},
		{name: "privileged", privileged: true, all: true},
		{name: "unknown", c: &runtimeapi.Capability{AddCapabilities: []string{"NOPE"}}, wantErr: true},
		{name: "ambient outside bounding", c: &runtimeapi.Capability{AddAmbientCapabilities: []string{"SYS_ADMIN"}}, wantErr: true},
		{name: "ambient", c: &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_RAW"}}, has: []string{"CAP_NET_RAW"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps, err := Capabilities(tc.privileged, tc.c)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.has {
				if !slices.Contains(caps.Bounding, h) || !slices.Contains(caps.Effective, h) {
					t.Errorf("%s missing from %v", h, caps.Bounding)
				}
			}
			for _, n := range tc.not {
				if slices.Contains(caps.Bounding, n) {
					t.Errorf("%s present in %v", n, caps.Bounding)
				}
			}
			if tc.all && len(caps.Bounding) != len(allCaps) {
				t.Errorf("got %d caps, want all %d", len(caps.Bounding), len(allCaps))
			}
			if amb := tc.c.GetAddAmbientCapabilities(); len(amb) > 0 && (len(caps.Ambient) != 1 || len(caps.Inheritable) != 1) {
				t.Errorf("ambient = %v inheritable = %v", caps.Ambient, caps.Inheritable)
			}
		})
	}
}

func writeRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www:/var/www:/bin/sh\nalice:x:1002:1003::/home/alice:/bin/sh\n"
	group := "root:x:0:\nwww-data:x:33:\nalice:x:1003:\nextra:x:2000:alice,www-data\nother:x:2001:alice\n"
	for name, data := range map[string]string{"passwd": passwd, "group": group} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveUser(t *testing.T) {
	root := writeRootfs(t)
	i := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		name      string
		imageUser string
		sc        *runtimeapi.LinuxContainerSecurityContext
		want      specs.User
		wantErr   bool
	}{
		{name: "default root", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "image name", imageUser: "www-data", want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 2000}}},
		{name: "image uid", imageUser: "1002", want: specs.User{UID: 1002, GID: 1003, AdditionalGids: []uint32{1003, 2000, 2001}}},
		{name: "image uid:gid", imageUser: "1002:50", want: specs.User{UID: 1002, GID: 50, AdditionalGids: []uint32{50}}},
		{name: "unknown uid", imageUser: "4242", want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "run as user replaces image", imageUser: "www-data", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i(1002)},
			want: specs.User{UID: 1002, GID: 1003, AdditionalGids: []uint32{1003, 2000, 2001}}},
		{name: "run as group", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i(1002), RunAsGroup: i(7)},
			want: specs.User{UID: 1002, GID: 7, AdditionalGids: []uint32{7, 2000, 2001}}},
		{name: "run as username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "alice"},
			want: specs.User{UID: 1002, GID: 1003, AdditionalGids: []uint32{1003, 2000, 2001}}},
		{name: "supplemental merge", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i(1002), SupplementalGroups: []int64{5000}},
			want: specs.User{UID: 1002, GID: 1003, AdditionalGids: []uint32{1003, 2000, 2001, 5000}}},
		{name: "supplemental strict", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i(1002), SupplementalGroups: []int64{5000},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			want: specs.User{UID: 1002, GID: 1003, AdditionalGids: []uint32{1003, 5000}}},
		{name: "unknown username", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "bob"}, wantErr: true},
		{name: "group without user", sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i(5)}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveUser(root, tc.imageUser, tc.sc)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("user = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUserLookupStaysInRootfs(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink to the host's passwd must resolve inside the rootfs, where
	// it does not exist, so a name known only on the host is not found.
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveUser(root, "root", nil); err == nil {
		t.Fatal("user resolved through a symlink out of the rootfs")
	}
}

type fakeSeccomp struct{}

func (fakeSeccomp) RuntimeDefault([]string) *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
}
func (fakeSeccomp) Load(path string) (*specs.LinuxSeccomp, error) {
	if path == "/missing.json" {
		return nil, os.ErrNotExist
	}
	return &specs.LinuxSeccomp{DefaultAction: specs.ActLog}, nil
}

func baseInput(t *testing.T) Input {
	return Input{
		ID: "c1", SandboxID: "p1",
		Pod: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid"},
			Hostname: "podhost",
		},
		Container: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "ctr"},
		},
		Image:       ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
		Rootfs:      writeRootfs(t),
		PodNS:       Namespaces{Net: "/ns/net", IPC: "/ns/ipc", UTS: "/ns/uts", PID: "/proc/9/ns/pid"},
		PodFiles:    PodFiles{Hostname: "/pod/hostname", Hosts: "/pod/hosts", ResolvConf: "/pod/resolv.conf", Shm: "/pod/shm"},
		CgroupsPath: "/kubepods/pod/c1",
		Seccomp:     fakeSeccomp{},
	}
}

func nsOf(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	m := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		m[n.Type] = n.Path
	}
	return m
}

func TestGenerateNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *runtimeapi.NamespaceOption
		ctr  *runtimeapi.NamespaceOption
		// noPodPID: the pod has no shared PID namespace.
		noPodPID bool
		want     map[specs.LinuxNamespaceType]string
	}{
		{name: "defaults share the pod pid ns", want: map[specs.LinuxNamespaceType]string{
			specs.MountNamespace: "", specs.NetworkNamespace: "/ns/net", specs.IPCNamespace: "/ns/ipc", specs.UTSNamespace: "/ns/uts", specs.PIDNamespace: "/proc/9/ns/pid"}},
		{name: "own pid", ctr: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, want: map[specs.LinuxNamespaceType]string{
			specs.MountNamespace: "", specs.NetworkNamespace: "/ns/net", specs.IPCNamespace: "/ns/ipc", specs.UTSNamespace: "/ns/uts", specs.PIDNamespace: ""}},
		{name: "pod pid", ctr: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}, want: map[specs.LinuxNamespaceType]string{
			specs.MountNamespace: "", specs.NetworkNamespace: "/ns/net", specs.IPCNamespace: "/ns/ipc", specs.UTSNamespace: "/ns/uts", specs.PIDNamespace: "/proc/9/ns/pid"}},
		{name: "unset pid in a pod sharing none gets its own", noPodPID: true, want: map[specs.LinuxNamespaceType]string{
			specs.MountNamespace: "", specs.NetworkNamespace: "/ns/net", specs.IPCNamespace: "/ns/ipc", specs.UTSNamespace: "/ns/uts", specs.PIDNamespace: ""}},
		{name: "host everything", pod: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
			ctr: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}, want: map[specs.LinuxNamespaceType]string{specs.MountNamespace: ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.Pod.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.pod}}
			in.Container.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: tc.ctr}}
			if tc.noPodPID {
				in.PodNS.PID = ""
			}
			s, err := Generate(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := nsOf(s); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("namespaces = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGenerateDefaults(t *testing.T) {
	in := baseInput(t)
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Args, []string{"sh"}) || s.Process.Cwd != "/" || s.Hostname != "podhost" {
		t.Fatalf("process = %+v hostname %q", s.Process, s.Hostname)
	}
	if s.Linux.Seccomp != nil {
		t.Fatal("seccomp set without a request")
	}
	if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
		t.Fatal("default masked/readonly paths missing")
	}
	dst := map[string]specs.Mount{}
	prev := -1
	for _, m := range s.Mounts {
		dst[m.Destination] = m
		if d := depth(m.Destination); d < prev {
			t.Fatalf("mounts not sorted by depth: %v", s.Mounts)
		} else {
			prev = d
		}
	}
	for _, want := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		if _, ok := dst[want]; !ok {
			t.Errorf("mount %s missing", want)
		}
	}
	if dst["/dev/shm"].Source != "/pod/shm" {
		t.Errorf("shm from %q", dst["/dev/shm"].Source)
	}
	if s.Annotations[AnnotationSandboxID] != "p1" || s.Annotations[AnnotationContainerName] != "ctr" {
		t.Errorf("annotations = %v", s.Annotations)
	}
}

func TestGenerateSecurity(t *testing.T) {
	in := baseInput(t)
	in.Container.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		ReadonlyRootfs: true, NoNewPrivs: true,
		Seccomp:     &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		MaskedPaths: []string{"/proc/x"},
	}}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Root.Readonly || !s.Process.NoNewPrivileges || s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Fatalf("security not applied: root %+v nnp %v seccomp %+v", s.Root, s.Process.NoNewPrivileges, s.Linux.Seccomp)
	}
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) {
		t.Fatalf("masked = %v", s.Linux.MaskedPaths)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/etc/hosts" && !slices.Contains(m.Options, "ro") {
			t.Fatal("/etc/hosts writable on a read-only rootfs")
		}
	}

	in.Container.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/missing.json"}
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing localhost profile: %v", err)
	}
	in.Container.Linux.SecurityContext.Seccomp.LocalhostRef = "relative.json"
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("relative localhost profile: %v", err)
	}

	in.Container.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("privileged container in unprivileged pod: %v", err)
	}
	in.Pod.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
	s, err = Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Process.Capabilities.Bounding) != len(allCaps) || !s.Linux.Resources.Devices[0].Allow {
		t.Fatal("privileged container still confined")
	}
	for _, m := range s.Mounts {
		if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && !slices.Contains(m.Options, "rw") {
			t.Errorf("privileged container's %s is not read-write: %v", m.Destination, m.Options)
		}
	}
}

func TestGenerateCgroupMount(t *testing.T) {
	in := baseInput(t)
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nsOf(s)[specs.CgroupNamespace]; ok {
		t.Error("cgroup namespace on a v1 host: the executor binds the container's cgroup directories there")
	}
	in.CgroupV2 = true
	v2, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := nsOf(v2)[specs.CgroupNamespace]; !ok || p != "" {
		t.Errorf("cgroup v2 host: cgroup namespace = %q, %v; want a new one", p, ok)
	}
	var found bool
	for _, m := range s.Mounts {
		if m.Destination == "/sys/fs/cgroup" {
			found = true
			if m.Type != "cgroup" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "nosuid") {
				t.Errorf("cgroup mount = %+v, want a read-only, nosuid cgroup mount", m)
			}
		}
	}
	if !found {
		t.Fatalf("no /sys/fs/cgroup mount in %v", s.Mounts)
	}
}

func TestGenerateMounts(t *testing.T) {
	in := baseInput(t)
	host := t.TempDir()
	missing := filepath.Join(host, "made", "by", "us")
	in.Container.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/data/sub", HostPath: host},
		{ContainerPath: "/data", HostPath: host, Readonly: true},
		{ContainerPath: "/etc/hosts", HostPath: host},
		{ContainerPath: "/new", HostPath: missing},
		{ContainerPath: "/rro", HostPath: host, Readonly: true, RecursiveReadOnly: true},
	}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range s.Mounts {
		order = append(order, m.Destination)
		switch m.Destination {
		case "/etc/hosts":
			if m.Source != host {
				t.Errorf("container mount did not replace /etc/hosts: %+v", m)
			}
		case "/data":
			if !slices.Contains(m.Options, "ro") {
				t.Errorf("/data not ro: %v", m.Options)
			}
		case "/rro":
			if !slices.Contains(m.Options, "rro") {
				t.Errorf("/rro options %v", m.Options)
			}
		}
	}
	if slices.Index(order, "/data") > slices.Index(order, "/data/sub") {
		t.Errorf("/data after /data/sub: %v", order)
	}
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Errorf("missing host path not created: %v", err)
	}
	for _, bad := range []*runtimeapi.Mount{
		{ContainerPath: "rel", HostPath: host},
		{ContainerPath: "/x", HostPath: "rel"},
		{ContainerPath: "/x", HostPath: host, RecursiveReadOnly: true},
		{ContainerPath: "/x", HostPath: host, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
	} {
		in.Container.Mounts = []*runtimeapi.Mount{bad}
		if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("mount %v: err = %v, want invalid argument", bad, err)
		}
	}
}

// TestGenerateImageVolumes: an image volume binds the source the caller
// resolved, read-only whatever Readonly says, with the propagation asked
// for (bidirectional refused); without a source it is unsupported.
func TestGenerateImageVolumes(t *testing.T) {
	const img = "docker.io/skiff/data:1"
	vol := func(m *runtimeapi.Mount) *runtimeapi.Mount {
		m.Image = &runtimeapi.ImageSpec{Image: img}
		return m
	}
	sources := map[string]ImageVolume{"/vol": {Source: "/state/image-volumes/abc"}, "/sub": {Source: "/state/image-volumes/abc/data"}, "/etc/hosts": {Source: "/state/image-volumes/abc/hosts"}}
	for _, tc := range []struct {
		name     string
		mount    *runtimeapi.Mount
		sources  map[string]ImageVolume
		want     []string // options
		rootProp string
		err      error
	}{
		{name: "private", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true}),
			want: []string{"rbind", "rprivate", "ro", "nodev"}},
		{name: "read-write asked", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol"}),
			want: []string{"rbind", "rprivate", "ro", "nodev"}},
		{name: "sub path source, unclean container path", mount: vol(&runtimeapi.Mount{ContainerPath: "/sub/", ImageSubPath: "data", Readonly: true}),
			want: []string{"rbind", "rprivate", "ro", "nodev"}},
		{name: "host to container", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}),
			want: []string{"rbind", "rslave", "ro", "nodev"}, rootProp: "rslave"},
		{name: "recursive read-only", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true, RecursiveReadOnly: true}),
			want: []string{"rbind", "rprivate", "rro", "nodev"}},
		{name: "selinux relabel ignored", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true, SelinuxRelabel: true}),
			want: []string{"rbind", "rprivate", "ro", "nodev"}},
		{name: "replaces a default mount", mount: vol(&runtimeapi.Mount{ContainerPath: "/etc/hosts", Readonly: true}),
			want: []string{"rbind", "rprivate", "ro", "nodev"}},
		{name: "bidirectional", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}),
			err: errdefs.ErrInvalidArgument},
		{name: "recursive read-only, host to container", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}),
			err: errdefs.ErrInvalidArgument},
		{name: "and a host path", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", HostPath: "/srv", Readonly: true}),
			err: errdefs.ErrInvalidArgument},
		{name: "relative container path", mount: vol(&runtimeapi.Mount{ContainerPath: "vol", Readonly: true}),
			err: errdefs.ErrInvalidArgument},
		{name: "no source", mount: vol(&runtimeapi.Mount{ContainerPath: "/elsewhere", Readonly: true}),
			err: errdefs.ErrUnimplemented},
		{name: "image volumes not set up", mount: vol(&runtimeapi.Mount{ContainerPath: "/vol", Readonly: true}), sources: map[string]ImageVolume{},
			err: errdefs.ErrUnimplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.ImageVolumes = sources
			if tc.sources != nil {
				in.ImageVolumes = tc.sources
			}
			in.Container.Mounts = []*runtimeapi.Mount{tc.mount}
			s, err := Generate(in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Generate = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Clean(tc.mount.ContainerPath)
			var got []specs.Mount
			for _, m := range s.Mounts {
				if m.Destination == dst {
					got = append(got, m)
				}
			}
			if len(got) != 1 {
				t.Fatalf("mounts at %s: %+v, want exactly the image volume", dst, got)
			}
			if got[0].Type != "bind" || got[0].Source != sources[dst].Source || !slices.Equal(got[0].Options, tc.want) {
				t.Errorf("image volume = %+v, want a bind of %s with %v", got[0], sources[dst].Source, tc.want)
			}
			if s.Linux.RootfsPropagation != tc.rootProp {
				t.Errorf("rootfs propagation %q, want %q", s.Linux.RootfsPropagation, tc.rootProp)
			}
		})
	}
}

func TestGenerateResources(t *testing.T) {
	in := baseInput(t)
	in.Container.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 500,
		CpusetCpus: "0", HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}},
	}}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Linux.Resources
	if *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || r.CPU.Cpus != "0" {
		t.Errorf("cpu = %+v", r.CPU)
	}
	if *r.Memory.Limit != 64<<20 || *s.Process.OOMScoreAdj != 500 || len(r.HugepageLimits) != 1 {
		t.Errorf("memory = %+v oom %v", r.Memory, s.Process.OOMScoreAdj)
	}
	in.Container.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: 2000}
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("oom_score_adj out of range: %v", err)
	}
}

func TestGenerateDevices(t *testing.T) {
	in := baseInput(t)
	in.Container.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}}
	s, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Fatalf("devices = %+v", s.Linux.Devices)
	}
	in.Container.Devices = []*runtimeapi.Device{{HostPath: "/dev/does-not-exist", ContainerPath: "/dev/x"}}
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("missing device: %v", err)
	}
}

// TestGenerateImageVolumeUserNamespace: an image volume with the pod's ID
// mappings binds a source idmapped already without mappings (the executor
// must not idmap it again), and a plain source with them; other mappings,
// or mappings in a pod without a user namespace, are refused either way.
func TestGenerateImageVolumeUserNamespace(t *testing.T) {
	podMap := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 65536, Length: 65536}}
	otherMap := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 131072, Length: 65536}}
	podNS := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: podMap, Gids: podMap}
	wantMap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}}
	for _, tc := range []struct {
		name     string
		pod      *runtimeapi.UserNamespace
		idmapped bool
		maps     []*runtimeapi.IDMapping
		want     []specs.LinuxIDMapping
		wantErr  error
	}{
		{name: "idmapped source", pod: podNS, idmapped: true, maps: podMap},
		{name: "plain source", pod: podNS, maps: podMap, want: wantMap},
		{name: "no mappings", pod: podNS},
		{name: "idmapped source, other mappings", pod: podNS, idmapped: true, maps: otherMap, wantErr: errdefs.ErrInvalidArgument},
		{name: "mappings in a pod without a user namespace", idmapped: true, maps: podMap, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			if tc.pod != nil {
				in.PodNS.User = "/ns/user"
			}
			in.Pod.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.pod}}}
			in.ImageVolumes = map[string]ImageVolume{"/vol": {Source: "/state/image-volumes/abc@p1", IDMapped: tc.idmapped}}
			in.Container.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: "data:1"}, Readonly: true,
				UidMappings: tc.maps, GidMappings: tc.maps}}
			s, err := Generate(in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range s.Mounts {
				if m.Destination != "/vol" {
					continue
				}
				if m.Source != "/state/image-volumes/abc@p1" || !slices.Equal(m.UIDMappings, tc.want) || !slices.Equal(m.GIDMappings, tc.want) {
					t.Fatalf("image volume %+v, want a bind of the source with mappings %v", m, tc.want)
				}
				return
			}
			t.Fatal("no image volume mount")
		})
	}
}

func TestGenerateUserNamespace(t *testing.T) {
	podMap := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 65536, Length: 65536}}
	otherMap := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 131072, Length: 65536}}
	podNS := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: podMap, Gids: podMap}
	wantMap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}}
	vol := func(uids, gids []*runtimeapi.IDMapping) []*runtimeapi.Mount {
		return []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), UidMappings: uids, GidMappings: gids}}
	}
	for _, tc := range []struct {
		name     string
		pod, ctr *runtimeapi.UserNamespace
		mounts   []*runtimeapi.Mount
		wantNS   bool
		wantVol  []specs.LinuxIDMapping
		wantErr  error
	}{
		{name: "host users"},
		{name: "node mode is the host's", pod: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE},
			ctr: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{name: "pod's", pod: podNS, ctr: podNS, wantNS: true},
		{name: "unset container follows the pod", pod: podNS, wantNS: true},
		{name: "idmapped volume", pod: podNS, ctr: podNS, mounts: vol(podMap, podMap), wantNS: true, wantVol: wantMap},
		{name: "volume without mappings stays plain", pod: podNS, ctr: podNS, mounts: vol(nil, nil), wantNS: true},
		{name: "container asks for another mapping", pod: podNS,
			ctr:     &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: otherMap, Gids: otherMap},
			wantErr: errdefs.ErrInvalidArgument},
		{name: "container asks for the host's in a pod with one", pod: podNS,
			ctr: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}, wantErr: errdefs.ErrInvalidArgument},
		{name: "container asks for one in a pod without", ctr: podNS, wantErr: errdefs.ErrInvalidArgument},
		{name: "volume mapped otherwise", pod: podNS, ctr: podNS, mounts: vol(otherMap, otherMap), wantErr: errdefs.ErrInvalidArgument},
		{name: "volume mapped in a pod without", mounts: vol(podMap, podMap), wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(t)
			in.PodNS.User = "/ns/user"
			in.Pod.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.pod}}}
			in.Container.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.ctr}}}
			in.Container.Mounts = tc.mounts
			s, err := Generate(in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			path, ok := nsOf(s)[specs.UserNamespace]
			if ok != tc.wantNS || (ok && path != "/ns/user") {
				t.Fatalf("user namespace = %q (%v), want it: %v", path, ok, tc.wantNS)
			}
			if tc.wantNS && (!slices.Equal(s.Linux.UIDMappings, wantMap) || !slices.Equal(s.Linux.GIDMappings, wantMap)) {
				t.Fatalf("mappings = %v %v, want %v", s.Linux.UIDMappings, s.Linux.GIDMappings, wantMap)
			}
			// procMount: Unmasked (no paths) is honoured in a user
			// namespace only.
			if masked := len(s.Linux.MaskedPaths) > 0 || len(s.Linux.ReadonlyPaths) > 0; masked == tc.wantNS {
				t.Errorf("masked %v, readonly %v with a user namespace: %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, tc.wantNS)
			}
			for _, m := range s.Mounts {
				if m.Destination == "/data" && (!slices.Equal(m.UIDMappings, tc.wantVol) || !slices.Equal(m.GIDMappings, tc.wantVol)) {
					t.Fatalf("volume mappings = %v %v, want %v", m.UIDMappings, m.GIDMappings, tc.wantVol)
				}
			}
		})
	}
}
