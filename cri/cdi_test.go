package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cdi"
	"github.com/skiffcri/skiff/errdefs"
)

const cdiTestSpec = `cdiVersion: "0.6.0"
kind: vendor.example/dev
devices:
  - name: zero
    containerEdits:
      deviceNodes:
        - path: /dev/cdi-zero
          type: c
          major: 1
          minor: 5
      env: ["FOO=bar"]
      mounts:
        - hostPath: /srv/cdi-data
          containerPath: /cdi-mnt
          options: ["ro", "bind"]
`

func newCDIEnv(t *testing.T) (*testEnv, *ledger, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vendor.yaml"), []byte(cdiTestSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	e := newLedgerEnv(t, l)
	e.s.cdi = cdi.New([]string{dir})
	return e, l, dir
}

// TestCreateContainerCDI: the devices of cdi_devices and of cdi.k8s.io
// annotations reach the spec the shim gets: device node and its cgroup
// rule, env, mount.
func TestCreateContainerCDI(t *testing.T) {
	for _, form := range []string{"cdi_devices", "annotation"} {
		t.Run(form, func(t *testing.T) {
			e, _, _ := newCDIEnv(t)
			podCfg := podConfigFor("cdi-"+strings.ReplaceAll(form, "_", "-"), runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			podID := e.runPod(t, podCfg)
			cfg := ctrConfig("c", nil)
			if form == "cdi_devices" {
				cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=zero"}}
			} else {
				cfg.Annotations = map[string]string{"cdi.k8s.io/test_dev": "vendor.example/dev=zero"}
			}
			id := e.createContainer(t, podID, podCfg, cfg)
			e.shims.mu.Lock()
			s := e.shims.specs[id].Spec
			e.shims.mu.Unlock()
			var dev bool
			for _, d := range s.Linux.Devices {
				if d.Path == "/dev/cdi-zero" && d.Type == "c" && d.Major == 1 && d.Minor == 5 {
					dev = true
				}
			}
			if !dev {
				t.Errorf("devices %+v lack /dev/cdi-zero", s.Linux.Devices)
			}
			var rule bool
			for _, r := range s.Linux.Resources.Devices {
				if r.Allow && r.Type == "c" && r.Major != nil && *r.Major == 1 && r.Minor != nil && *r.Minor == 5 {
					rule = true
				}
			}
			if !rule {
				t.Errorf("device cgroup rules %+v do not allow c 1:5", s.Linux.Resources.Devices)
			}
			if !slices.Contains(s.Process.Env, "FOO=bar") {
				t.Errorf("env %v lacks FOO=bar", s.Process.Env)
			}
			if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/cdi-mnt" && m.Source == "/srv/cdi-data" }) {
				t.Errorf("mounts %+v lack /cdi-mnt", s.Mounts)
			}
		})
	}
}

// TestCreateContainerUnknownCDIDevice: an unknown device fails the call
// with FailedPrecondition naming the device and the directory searched,
// and leaves nothing (no record, no rootfs, no image hold, no shim
// container); a malformed name is InvalidArgument.
func TestCreateContainerUnknownCDIDevice(t *testing.T) {
	e, l, dir := newCDIEnv(t)
	podCfg := podConfigFor("cdi-unknown", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	podID := e.runPod(t, podCfg)
	before := l.held()
	for _, c := range []struct {
		device string
		kind   error
		want   []string
	}{
		{"vendor.example/dev=nope", errdefs.ErrFailedPrecondition, []string{"vendor.example/dev=nope", dir}},
		{"nope", errdefs.ErrInvalidArgument, []string{`"nope"`}},
	} {
		cfg := ctrConfig("c", nil)
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions}
		cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=zero"}, {Name: c.device}}
		_, err := e.s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
		if !errors.Is(err, c.kind) {
			t.Fatalf("%s: err = %v, want %v", c.device, err, c.kind)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
		if held := l.held(); fmt.Sprint(held) != fmt.Sprint(before) {
			t.Errorf("%s: held %v, before the call %v", c.device, held, before)
		}
		if ctrs, err := e.s.meta.Containers(); err != nil || len(ctrs) != 0 {
			t.Errorf("%s: container records: %d (%v)", c.device, len(ctrs), err)
		}
	}
	// The name is free again.
	cfg := ctrConfig("c", nil)
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=zero"}}
	e.createContainer(t, podID, podCfg, cfg)
}
