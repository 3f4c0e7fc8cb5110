package cdi

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
)

// zeroSpec defines vendor.example/dev=zero: the host's /dev/zero as
// /dev/cdi-zero, FOO=bar and a read-only bind of mountSrc at /cdi-mnt;
// the spec itself adds SPEC_WIDE=1 to any of its devices.
func zeroSpec(mountSrc string) string {
	return `cdiVersion: "0.6.0"
kind: vendor.example/dev
devices:
  - name: zero
    containerEdits:
      deviceNodes:
        - path: /dev/cdi-zero
          hostPath: /dev/zero
      env: ["FOO=bar"]
      mounts:
        - hostPath: ` + mountSrc + `
          containerPath: /cdi-mnt
          options: ["ro", "nosuid", "nodev", "bind"]
  - name: other
    containerEdits:
      env: ["OTHER=1"]
containerEdits:
  env: ["SPEC_WIDE=1"]
`
}

func writeSpec(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// baseSpec is the part of a generated spec that CDI edits touch.
func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Env: []string{"PATH=/bin"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
		}}},
	}
}

func TestInject(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	dir := t.TempDir()
	writeSpec(t, dir, "vendor.yaml", zeroSpec("/srv/data"))
	r := New([]string{dir, filepath.Join(dir, "missing")})
	s := baseSpec()
	if err := r.Inject(s, []string{"vendor.example/dev=zero"}); err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Devices) != 1 {
		t.Fatalf("devices %+v, want /dev/cdi-zero", s.Linux.Devices)
	}
	d := s.Linux.Devices[0]
	if d.Path != "/dev/cdi-zero" || d.Type != "c" || d.Major != 1 || d.Minor != 5 {
		t.Errorf("device %+v, want /dev/cdi-zero c 1:5 (the host's /dev/zero)", d)
	}
	// The device cgroup must let the container use it.
	rules := s.Linux.Resources.Devices
	last := rules[len(rules)-1]
	if !last.Allow || last.Type != "c" || last.Major == nil || *last.Major != 1 || last.Minor == nil || *last.Minor != 5 || last.Access != "rwm" {
		t.Errorf("device cgroup rules %+v, want c 1:5 rwm allowed after the deny-all", rules)
	}
	for _, e := range []string{"PATH=/bin", "FOO=bar", "SPEC_WIDE=1"} {
		if !slices.Contains(s.Process.Env, e) {
			t.Errorf("env %v lacks %s", s.Process.Env, e)
		}
	}
	var found bool
	for _, m := range s.Mounts {
		if m.Destination == "/cdi-mnt" {
			found = true
			if m.Source != "/srv/data" || !slices.Contains(m.Options, "bind") || !slices.Contains(m.Options, "ro") {
				t.Errorf("mount %+v", m)
			}
		}
	}
	if !found {
		t.Errorf("mounts %+v lack /cdi-mnt", s.Mounts)
	}
}

func TestInjectUnknownDevice(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "vendor.yaml", zeroSpec("/srv/data"))
	writeSpec(t, dir, "broken.json", `{"cdiVersion": "0.6.0", "kind": "broken.example/x", "devices": [{"name": ""}]}`)
	r := New([]string{dir})
	s := baseSpec()
	before := baseSpec()
	err := r.Inject(s, []string{"vendor.example/dev=other", "vendor.example/dev=nope"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	for _, want := range []string{"vendor.example/dev=nope", dir, "broken.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "dev=other") {
		t.Errorf("error %q names a device that resolves", err)
	}
	if !reflect.DeepEqual(s, before) {
		t.Errorf("spec changed by a failed injection: %+v", s)
	}
	// The broken spec does not stop the good one's devices.
	if err := r.Inject(s, []string{"vendor.example/dev=other"}); err != nil {
		t.Fatalf("a valid device next to a broken spec: %v", err)
	}
}

func TestInjectSeesNewSpecs(t *testing.T) {
	dir := t.TempDir()
	r := New([]string{dir})
	if err := r.Inject(baseSpec(), []string{"vendor.example/dev=other"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("before the spec is written: %v", err)
	}
	writeSpec(t, dir, "vendor.json", `{"cdiVersion": "0.6.0", "kind": "vendor.example/dev",
		"devices": [{"name": "other", "containerEdits": {"env": ["OTHER=1"]}}]}`)
	s := baseSpec()
	if err := r.Inject(s, []string{"vendor.example/dev=other"}); err != nil {
		t.Fatalf("after the spec is written: %v", err)
	}
	if !slices.Contains(s.Process.Env, "OTHER=1") {
		t.Errorf("env %v", s.Process.Env)
	}
}

func TestInjectWithoutDirs(t *testing.T) {
	r := New(nil)
	if err := r.Inject(baseSpec(), nil); err != nil {
		t.Fatalf("no devices: %v", err)
	}
	err := r.Inject(baseSpec(), []string{"vendor.example/dev=zero"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "cdi_spec_dirs") {
		t.Fatalf("err = %v", err)
	}
}

func TestRequested(t *testing.T) {
	for _, c := range []struct {
		name        string
		names       []string
		annotations map[string]string
		want        []string
		invalid     bool
	}{
		{"none", nil, map[string]string{"other": "x"}, nil, false},
		{"field", []string{"vendor.example/dev=zero", "vendor.example/dev=one"}, nil,
			[]string{"vendor.example/dev=zero", "vendor.example/dev=one"}, false},
		{"annotations by key, deduplicated", []string{"vendor.example/dev=zero"}, map[string]string{
			"cdi.k8s.io/b_plugin": "vendor.example/dev=two",
			"cdi.k8s.io/a_plugin": "vendor.example/dev=one,vendor.example/dev=zero",
			"io.kubernetes.x":     "not a device",
		}, []string{"vendor.example/dev=zero", "vendor.example/dev=one", "vendor.example/dev=two"}, false},
		{"malformed field", []string{"zero"}, nil, nil, true},
		{"malformed annotation", nil, map[string]string{"cdi.k8s.io/p": "vendor.example/dev=ok,bad"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Requested(c.names, c.annotations)
			if c.invalid {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}
