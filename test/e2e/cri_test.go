package e2e

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pull pulls ref through the CRI and returns the image ref skiffd answers.
func (d *daemon) pull(t *testing.T, ref string) string {
	t.Helper()
	resp, err := d.img.PullImage(ctxT(t, 3*time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
	if resp.ImageRef == "" {
		t.Fatalf("PullImage %s: empty image ref", ref)
	}
	return resp.ImageRef
}

// podConfig is what the kubelet would send for a plain pod named name.
func (d *daemon) podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name: name, Namespace: "e2e", Uid: name + "-uid", Attempt: 0,
		},
		Hostname:     name,
		LogDirectory: filepath.Join(d.logDir, name),
		Labels:       map[string]string{"app": name, "suite": "e2e"},
		Annotations:  map[string]string{"e2e/test": d.t.Name()},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: d.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// runPodWith runs cfg and returns the pod ID; t.Cleanup stops and removes
// it (the daemon's clean-up checks that this released everything).
func (d *daemon) runPodWith(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := d.rt.RunPodSandbox(ctxT(t, 2*time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	id := resp.PodSandboxId
	d.podIDs = append(d.podIDs, id)
	t.Cleanup(func() { d.removePod(t, id) })
	return id
}

func (d *daemon) runPod(t *testing.T, name string) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	cfg := d.podConfig(name)
	return d.runPodWith(t, cfg), cfg
}

// removePod stops and removes a pod, as the kubelet does, if the daemon is
// still up; both calls must succeed also for a pod already gone.
func (d *daemon) removePod(t *testing.T, id string) {
	if !d.running() || d.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("StopPodSandbox %s: %v", id, err)
	}
	if _, err := d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("RemovePodSandbox %s: %v", id, err)
	}
}

// containerConfig runs cmd from image; logs go to <name>.log in the pod's
// log directory.
func containerConfig(name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"container": name},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{},
		},
	}
}

// createContainer creates cfg in the pod. Like the kubelet, it gives the
// container the pod's namespace options unless cfg sets its own.
func (d *daemon) createContainer(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	if sc := cfg.GetLinux().GetSecurityContext(); sc != nil && sc.NamespaceOptions == nil {
		sc.NamespaceOptions = podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	}
	resp, err := d.rt.CreateContainer(ctxT(t, 2*time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	return resp.ContainerId
}

func (d *daemon) startContainer(t *testing.T, id string) {
	t.Helper()
	_, err := d.rt.StartContainer(ctxT(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
}

// runContainer creates and starts a container running cmd from busybox.
func (d *daemon) runContainer(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, name string, cmd ...string) string {
	t.Helper()
	id := d.createContainer(t, podID, podCfg, containerConfig(name, busybox, cmd...))
	d.startContainer(t, id)
	return id
}

func (d *daemon) containerStatus(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := d.rt.ContainerStatus(ctxT(t, 30*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return resp.Status
}

// waitState polls ContainerStatus until the container is in want.
func (d *daemon) waitState(t *testing.T, id string, want runtimeapi.ContainerState, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := d.containerStatus(t, id)
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: state %s after %s, want %s", id, st.State, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// execSync runs cmd in a container and returns the answer.
func (d *daemon) execSync(t *testing.T, id string, timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout+30)*time.Second)
	defer cancel()
	return d.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
}

// logLine is one line of the CRI log format.
type logLine struct {
	Time   time.Time
	Stream string // stdout or stderr
	Tag    string // P (partial) or F (full)
	Text   string
}

var logLineRE = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

// readLog parses a CRI log file and fails the test on any malformed line.
func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read container log: %v", err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		m := logLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("%s:%d: not CRI log format: %q", path, n, sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("%s:%d: timestamp %q: %v", path, n, m[1], err)
		}
		out = append(out, logLine{Time: ts, Stream: m[2], Tag: m[3], Text: m[4]})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out
}

// logText joins full lines of one stream (all streams if stream is "").
func logText(lines []logLine, stream string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		if stream != "" && l.Stream != stream {
			continue
		}
		cur.WriteString(l.Text)
		if l.Tag == "F" {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	return out
}

// waitLog waits until the container's log holds a full line equal to want.
func waitLog(t *testing.T, path, stream, want string, timeout time.Duration) []logLine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			lines := readLog(t, path)
			for _, l := range logText(lines, stream) {
				if l == want {
					return lines
				}
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("log %s: no %s line %q after %s; log:\n%s", path, stream, want, timeout, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
