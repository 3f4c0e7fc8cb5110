package oci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

func TestParseMountOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []string
		want mountOpts
	}{
		{"proc", []string{"nosuid", "noexec", "nodev"}, mountOpts{flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV}},
		{"tmpfs data", []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			mountOpts{flags: unix.MS_NOSUID | unix.MS_STRICTATIME, data: "mode=755,size=65536k"}},
		{"rbind ro rprivate", []string{"rbind", "ro", "rprivate"},
			mountOpts{flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC}}},
		{"later wins", []string{"ro", "rw"}, mountOpts{clearFlags: unix.MS_RDONLY}},
		{"rro", []string{"rbind", "rro", "rnosuid"},
			mountOpts{flags: unix.MS_BIND | unix.MS_REC, recSet: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}},
		{"rrw clears", []string{"rro", "rrw"}, mountOpts{recClr: unix.MOUNT_ATTR_RDONLY}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := parseMountOptions(c.in); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	for _, c := range []struct {
		name, line string
		start      uint64
		state      byte
		bad        bool
	}{
		{"plain", "42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 2000000 100 18446744073709551615", 123456, 'S', false},
		{"comm with spaces and parens", "7 (a) b (c) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", 99, 'Z', false},
		{"truncated", "7 (x) S 1 2", 0, 0, true},
		{"no paren", "garbage", 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			start, state, err := parseStat([]byte(c.line))
			if (err != nil) != c.bad {
				t.Fatalf("err = %v", err)
			}
			if !c.bad && (start != c.start || state != c.state) {
				t.Fatalf("got %d %c", start, state)
			}
		})
	}
}

func TestValidateSysctls(t *testing.T) {
	withNS := func(types ...specs.LinuxNamespaceType) *specs.Linux {
		l := &specs.Linux{}
		for _, ty := range types {
			l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: ty})
		}
		return l
	}
	for _, c := range []struct {
		name string
		key  string
		l    *specs.Linux
		ok   bool
	}{
		{"net in netns", "net.ipv4.ip_forward", withNS(specs.NetworkNamespace), true},
		{"net on host", "net.ipv4.ip_forward", withNS(specs.IPCNamespace), false},
		{"ipc", "kernel.shm_rmid_forced", withNS(specs.IPCNamespace), true},
		{"mqueue", "fs.mqueue.msg_max", withNS(specs.IPCNamespace), true},
		{"not namespaced", "vm.swappiness", withNS(specs.NetworkNamespace, specs.IPCNamespace), false},
		{"kernel non-ipc", "kernel.pid_max", withNS(specs.IPCNamespace), false},
		{"escapes its namespace's tree", "net.//.kernel.core_pattern", withNS(specs.NetworkNamespace), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validateSysctls(map[string]string{c.key: "1"}, c.l)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("wrong kind: %v", err)
			}
		})
	}
}

func TestPlanNamespaces(t *testing.T) {
	l := &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.CgroupNamespace},
		{Type: specs.NetworkNamespace, Path: "/run/skiff/ns/p/net"},
		{Type: specs.IPCNamespace, Path: "/run/skiff/ns/p/ipc"},
	}}
	p, err := planNamespaces(l)
	if err != nil {
		t.Fatal(err)
	}
	if p.cloneFlags != unix.CLONE_NEWNS|unix.CLONE_NEWPID|unix.CLONE_NEWUTS {
		t.Errorf("clone flags %#x", p.cloneFlags)
	}
	if !p.newCgroup || !p.newUTS || p.newNet || p.joinPid || len(p.join) != 2 {
		t.Errorf("plan %+v", p)
	}
	for _, c := range []struct {
		name string
		ns   []specs.LinuxNamespace
		kind error
	}{
		{"no mount ns", []specs.LinuxNamespace{{Type: specs.PIDNamespace}}, errdefs.ErrInvalidArgument},
		{"user ns without maps", []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.UserNamespace}}, errdefs.ErrInvalidArgument},
		{"time ns", []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.TimeNamespace}}, errdefs.ErrUnimplemented},
		{"twice", []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.MountNamespace}}, errdefs.ErrInvalidArgument},
		{"bogus", []specs.LinuxNamespace{{Type: "bogus"}}, errdefs.ErrInvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := planNamespaces(&specs.Linux{Namespaces: c.ns}); !errors.Is(err, c.kind) {
				t.Fatalf("err = %v, want %v", err, c.kind)
			}
		})
	}
}

func TestPlanUserNamespace(t *testing.T) {
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}}
	ns := []specs.LinuxNamespace{
		{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.CgroupNamespace}, {Type: specs.NetworkNamespace, Path: "/ns/net"},
	}
	// A new user namespace comes with the clone, and owns the others.
	p, err := planNamespaces(&specs.Linux{UIDMappings: maps, GIDMappings: maps,
		Namespaces: append(slices.Clone(ns), specs.LinuxNamespace{Type: specs.UserNamespace})})
	if err != nil {
		t.Fatal(err)
	}
	if !p.newUser || p.joinUser != "" || p.unshare != 0 || p.cloneFlags != unix.CLONE_NEWUSER|unix.CLONE_NEWNS|unix.CLONE_NEWPID|unix.CLONE_NEWUTS {
		t.Errorf("new user namespace: plan %+v", p)
	}
	// A joined one is entered by the pre-runtime stage, which then
	// unshares the new namespaces so that the user namespace owns them.
	p, err = planNamespaces(&specs.Linux{UIDMappings: maps, GIDMappings: maps,
		Namespaces: append(slices.Clone(ns), specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/ns/user"})})
	if err != nil {
		t.Fatal(err)
	}
	if p.newUser || p.joinUser != "/ns/user" || p.cloneFlags != 0 || p.unshare != unix.CLONE_NEWNS|unix.CLONE_NEWPID|unix.CLONE_NEWUTS || len(p.join) != 1 {
		t.Errorf("joined user namespace: plan %+v", p)
	}
}

func TestParseCaps(t *testing.T) {
	caps := &specs.LinuxCapabilities{
		Bounding:  []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_CHECKPOINT_RESTORE"},
		Effective: []string{"cap_kill"},
		Ambient:   []string{"CAP_NET_BIND_SERVICE"},
	}
	// With last = CAP_SYS_ADMIN (21), CAP_CHECKPOINT_RESTORE (40) is unknown
	// to the "kernel" and dropped.
	s, err := parseCaps(caps, capability.CAP_SYS_ADMIN)
	if err != nil {
		t.Fatal(err)
	}
	want := capSets{bounding: 1<<0 | 1<<10, effective: 1 << 5, ambient: 1 << 10}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if _, err := parseCaps(&specs.LinuxCapabilities{Permitted: []string{"CAP_NOPE"}}, capability.CAP_CHECKPOINT_RESTORE); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("unknown cap: %v", err)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{"abc": true, "a-b_c.d+1": true, "": false, "../x": false, "a/b": false, ".x": false} {
		if validID(id) != ok {
			t.Errorf("%q: want %v", id, ok)
		}
	}
}

func TestFeatures(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		nsenter bool
	}{{"without skiff-nsenter", false}, {"with skiff-nsenter", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nsenter {
				if err := os.WriteFile(filepath.Join(dir, "skiff-nsenter"), nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			e := &Executor{InitPath: filepath.Join(dir, "skiff-shim")}
			f := e.Features()
			if f.Linux == nil || f.Linux.MountExtensions == nil || f.Linux.MountExtensions.IDMap == nil {
				t.Fatalf("features without linux mount extensions: %+v", f)
			}
			hasUser := slices.Contains(f.Linux.Namespaces, "user")
			if hasUser != tc.nsenter || *f.Linux.MountExtensions.IDMap.Enabled != tc.nsenter {
				t.Fatalf("user namespace %v, idmap %v", hasUser, *f.Linux.MountExtensions.IDMap.Enabled)
			}
			for _, o := range []string{"rbind", "rro", "ro", "nosuid", "rslave"} {
				if !slices.Contains(f.MountOptions, o) {
					t.Errorf("mount option %q not listed", o)
				}
			}
		})
	}
}
