package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCDIDevice: a CDI spec in skiffd's configured spec directory injects
// a device node (the host's /dev/zero as /dev/cdi-zero), an env var, a
// read-only mount and a createContainer hook; the container sees and uses
// all three and the hook ran with the container's state. An unknown
// device fails CreateContainer with FailedPrecondition, naming it and the
// directory, and leaves no container.
func TestCDIDevice(t *testing.T) {
	cdiDir := t.TempDir()
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "hello"), []byte("from-cdi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hookOut := filepath.Join(t.TempDir(), "hook-state")
	spec := fmt.Sprintf(`cdiVersion: "0.6.0"
kind: vendor.example/dev
devices:
  - name: zero
    containerEdits:
      deviceNodes:
        - path: /dev/cdi-zero
          hostPath: /dev/zero
        # Not among the default devices: its device cgroup rule can only
        # come from the CDI edits.
        - path: /dev/cdi-kmsg
          type: c
          major: 1
          minor: 11
          permissions: r
      env: ["FOO=bar"]
      mounts:
        - hostPath: %s
          containerPath: /cdi-mnt
          options: ["ro", "nosuid", "nodev", "bind"]
      hooks:
        - hookName: createContainer
          path: /bin/sh
          args: ["sh", "-c", "cat > %s"]
`, data, hookOut)
	if err := os.WriteFile(filepath.Join(cdiDir, "vendor.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, daemonOptions{cdiSpecDirs: []string{cdiDir}})
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "cdi")

	cfg := containerConfig("cdi", busybox, "sh", "-c",
		`stat -c 'node %F %t:%T' /dev/cdi-zero; echo "read $(head -c 16 /dev/cdi-zero | wc -c)"; echo "FOO=$FOO"; `+
			`cat /cdi-mnt/hello; touch /cdi-mnt/x 2>/dev/null || echo read-only; `+
			`if [ -f /sys/fs/cgroup/devices/devices.list ]; then grep -q '^c 1:11 r$' /sys/fs/cgroup/devices/devices.list && echo kmsg-allowed; else echo no-devices-list; fi`)
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=zero"}}
	id := d.createContainer(t, podID, podCfg, cfg)
	b, err := os.ReadFile(hookOut)
	if err != nil {
		t.Fatalf("the CDI spec's createContainer hook did not run: %v", err)
	}
	var st specs.State
	if err := json.Unmarshal(b, &st); err != nil || st.ID != id || st.Pid <= 0 {
		t.Errorf("the hook's state %q (%v), want container %s with its pid", b, err, id)
	}
	d.startContainer(t, id)
	if cs := d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second); cs.ExitCode != 0 {
		t.Errorf("container exited %d", cs.ExitCode)
	}
	got := strings.Join(logText(readLog(t, filepath.Join(podCfg.LogDirectory, "cdi.log")), "stdout"), "\n")
	wants := []string{"node character special file 1:5", "read 16", "FOO=bar", "from-cdi", "read-only"}
	if !strings.Contains(got, "no-devices-list") {
		// cgroup v1: the container's devices.list shows the CDI rule (on
		// v2 the rules are an eBPF program, with nothing to read).
		wants = append(wants, "kmsg-allowed")
	}
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s", want, got)
		}
	}

	bad := containerConfig("cdi-unknown", busybox, "true")
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/dev=nope"}}
	bad.Linux.SecurityContext.NamespaceOptions = podCfg.Linux.SecurityContext.NamespaceOptions
	_, err = d.rt.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "vendor.example/dev=nope") || !strings.Contains(err.Error(), cdiDir) {
		t.Fatalf("CreateContainer with an unknown CDI device: %v, want FailedPrecondition naming it and %s", err, cdiDir)
	}
	resp, err := d.rt.ListContainers(ctxT(t, time.Minute), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Containers) != 1 {
		t.Errorf("containers after the failed create: %v, want only %s", resp.Containers, id)
	}
}
