package oci

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The fields of specs.Spec and specs.Linux that the init does not read:
// the parent's (the namespaces it clones or joins, the cgroup it makes and
// its limits, the state's annotations), Process (initConfig.Process is the
// process to run), and those for other platforms or that the executor does
// not implement.
var (
	specNotForInit  = []string{"Version", "Process", "Annotations", "Solaris", "Windows", "VM", "ZOS", "FreeBSD"}
	linuxNotForInit = []string{"Resources", "CgroupsPath", "Namespaces", "NetDevices", "MountLabel", "IntelRdt",
		"MemoryPolicy", "Personality", "TimeOffsets"}
)

// TestInitSpecCoversSpec: every field of specs.Spec and specs.Linux is
// either sent to the init, with the same type and JSON name, or named as
// one it does not read; a field a newer runtime-spec adds fails here until
// it is one or the other.
func TestInitSpecCoversSpec(t *testing.T) {
	for _, tc := range []struct {
		full, part reflect.Type
		notForInit []string
	}{
		{reflect.TypeFor[specs.Spec](), reflect.TypeFor[initSpec](), specNotForInit},
		{reflect.TypeFor[specs.Linux](), reflect.TypeFor[initLinux](), linuxNotForInit},
	} {
		for f := range tc.full.Fields() {
			p, sent := tc.part.FieldByName(f.Name)
			switch {
			case sent && slices.Contains(tc.notForInit, f.Name):
				t.Errorf("%s.%s is both sent and not for the init", tc.full, f.Name)
			case sent && f.Name == "Linux":
				if p.Tag.Get("json") != f.Tag.Get("json") {
					t.Errorf("%s.%s: json tag %q, want %q", tc.part, f.Name, p.Tag.Get("json"), f.Tag.Get("json"))
				}
			case sent:
				if p.Type != f.Type || p.Tag.Get("json") != f.Tag.Get("json") {
					t.Errorf("%s.%s is %s `json:%q`, want %s `json:%q`", tc.part, f.Name, p.Type, p.Tag.Get("json"), f.Type, f.Tag.Get("json"))
				}
			case !slices.Contains(tc.notForInit, f.Name):
				t.Errorf("%s.%s is neither sent to the init nor named as one it does not read", tc.full, f.Name)
			}
		}
		if tc.part.NumField() != tc.full.NumField()-len(tc.notForInit) {
			t.Errorf("%s has %d fields, want the %d of %s the init reads", tc.part, tc.part.NumField(), tc.full.NumField()-len(tc.notForInit), tc.full)
		}
	}
}

// TestInitSpecRoundTrip: what the init decodes is the spec it was sent,
// less the fields it does not read.
func TestInitSpecRoundTrip(t *testing.T) {
	full := &specs.Spec{
		Version:     specs.Version,
		Process:     &specs.Process{Args: []string{"sh"}},
		Root:        &specs.Root{Path: "rootfs", Readonly: true},
		Hostname:    "h",
		Domainname:  "d",
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}}},
		Hooks:       &specs.Hooks{CreateContainer: []specs.Hook{{Path: "/bin/true", Args: []string{"true"}}}},
		Annotations: map[string]string{"a": "b"},
		Linux: &specs.Linux{
			UIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
			GIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
			Sysctl:            map[string]string{"net.ipv4.ip_forward": "1"},
			Devices:           []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
			Seccomp:           &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}},
			RootfsPropagation: "rslave",
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			CgroupsPath:       "/x",
			Namespaces:        []specs.LinuxNamespace{{Type: specs.PIDNamespace}},
		},
	}
	b, err := json.Marshal(newInitSpec(full))
	if err != nil {
		t.Fatal(err)
	}
	var got initSpec
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := *full
	want.Version, want.Process, want.Annotations = "", nil, nil
	lin := *full.Linux
	lin.CgroupsPath, lin.Namespaces = "", nil
	want.Linux = &lin
	if s := got.spec(); !reflect.DeepEqual(s, &want) {
		t.Errorf("decoded %+v\nwant %+v", s, &want)
	}
}
