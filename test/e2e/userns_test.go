package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsHostID is where the test pods' user namespaces map their root, as
// the kubelet allocates ranges: a multiple of 65536.
const usernsHostID = 4 << 16

// TestUserNamespacePod runs pods the way the kubelet runs `hostUsers:
// false`: userns_options mode POD with one mapping, the same options on
// the container, and the pod's mappings on every volume the kubelet
// idmaps. The container's root is root inside and the mapped host uid
// outside; it owns the image's files and its emptyDir but has no
// privilege over a root-owned host file bound without mappings. With a
// shared PID namespace the pod init lives in the user namespace too.
func TestUserNamespacePod(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	st, err := d.rt.Status(ctxT(t, 30*time.Second), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if f := st.RuntimeHandlers[0].GetFeatures(); !f.GetUserNamespaces() {
		t.Fatalf("Status does not report user namespaces: %v\n%s", st.RuntimeHandlers, d.logTail())
	}
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
	for _, pid := range []runtimeapi.NamespaceMode{runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD} {
		t.Run("pid-"+strings.ToLower(pid.String()), func(t *testing.T) {
			vols := t.TempDir()
			empty, host := filepath.Join(vols, "empty"), filepath.Join(vols, "host")
			mustDo(t, os.Mkdir(empty, 0o777))
			mustDo(t, os.Chmod(empty, 0o777))
			mustDo(t, os.Mkdir(host, 0o755))
			mustDo(t, os.WriteFile(filepath.Join(host, "rootfile"), []byte("host\n"), 0o644))

			name := "userns-" + strings.ToLower(pid.String())
			cfg := d.podConfig(name)
			ns := cfg.Linux.SecurityContext.NamespaceOptions
			ns.Pid = pid
			ns.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
			podID := d.runPodWith(t, cfg)

			c := containerConfig("main", busybox, "sh", "-c", `
cat /proc/self/uid_map; echo uid=$(id -u) gid=$(id -g)
echo image-owner=$(stat -c %u /bin/busybox)
echo x > /rootfs-new && echo rootfs-write=ok
echo empty-owner=$(stat -c %u:%g /empty)
echo x > /empty/new && echo empty-write=ok
echo x 2>/dev/null > /host/rootfile && echo host-write=ok || echo host-write=denied
echo host-owner=$(stat -c %u /host/rootfile)
echo pid1=$(cat /proc/1/comm)
exec sleep 1000`)
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/empty", HostPath: empty, UidMappings: mapping, GidMappings: mapping},
				{ContainerPath: "/host", HostPath: host},
			}
			id := d.createContainer(t, podID, cfg, c)
			d.startContainer(t, id)
			logPath := filepath.Join(cfg.LogDirectory, "main.log")
			// PID 1 is the pod init in a pod that shares its PID
			// namespace, else the container's own shell.
			pid1 := "sh"
			if pid == runtimeapi.NamespaceMode_POD {
				pid1 = "skiff-pod-init"
			}
			waitLog(t, logPath, "stdout", "pid1="+pid1, 30*time.Second)
			out := strings.Join(logText(readLog(t, logPath), "stdout"), "\n")
			for _, want := range []string{
				fmt.Sprintf("0 %d 65536", usernsHostID), "uid=0 gid=0", "image-owner=0", "rootfs-write=ok",
				"empty-owner=0:0", "empty-write=ok", "host-write=denied", "host-owner=65534", "pid1=" + pid1,
			} {
				if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
					t.Errorf("container output lacks %q:\n%s", want, out)
				}
			}

			// Outside, the container's process is the mapped host uid.
			_, info := d.verboseContainer(t, id)
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", info.Pid))
			mustDo(t, err)
			if f := strings.Fields(string(b)); len(f) != 3 || f[1] != fmt.Sprint(usernsHostID) {
				t.Errorf("host view of the container's uid_map: %q", b)
			}
			var pst unix.Stat_t
			mustDo(t, unix.Stat(fmt.Sprintf("/proc/%d", info.Pid), &pst))
			if pst.Uid != usernsHostID {
				t.Errorf("container process runs as host uid %d, want %d", pst.Uid, usernsHostID)
			}
			// What it wrote through the idmapped emptyDir is root's on the
			// host's disk; the host file it could not write is unchanged.
			var fst unix.Stat_t
			mustDo(t, unix.Stat(filepath.Join(empty, "new"), &fst))
			if fst.Uid != 0 || fst.Gid != 0 {
				t.Errorf("emptyDir file written by the pod's root is %d:%d on the host, want 0:0", fst.Uid, fst.Gid)
			}
			if b, _ := os.ReadFile(filepath.Join(host, "rootfile")); string(b) != "host\n" {
				t.Errorf("host file changed: %q", b)
			}
			// The writable layer keeps what the pod's root wrote unmapped.
			upper := filepath.Join(d.root, "containers", id, "upper", "rootfs-new")
			mustDo(t, unix.Stat(upper, &fst))
			if fst.Uid != 0 {
				t.Errorf("writable layer file is uid %d on disk, want 0", fst.Uid)
			}
			// Exec joins the same user namespace.
			if r := d.run(t, id, "sh", "-c", "id -u; cat /proc/self/uid_map"); r.ExitCode != 0 ||
				!strings.HasPrefix(strings.Join(strings.Fields(string(r.Stdout)), " "), fmt.Sprintf("0 0 %d 65536", usernsHostID)) {
				t.Errorf("exec: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
			}
		})
	}
}

// TestUserNamespaceRefused: the requests critest and containerd refuse
// fail RunPodSandbox with InvalidArgument and leave nothing.
func TestUserNamespaceRefused(t *testing.T) {
	d := startDaemon(t)
	one := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
	for name, u := range map[string]*runtimeapi.UserNamespace{
		"two-ranges": {Mode: runtimeapi.NamespaceMode_POD, Uids: append(one, &runtimeapi.IDMapping{ContainerId: 65536, HostId: 2 * usernsHostID, Length: 1}), Gids: one},
		"no-root":    {Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{{ContainerId: 1, HostId: usernsHostID, Length: 65536}}, Gids: one},
		"container":  {Mode: runtimeapi.NamespaceMode_CONTAINER},
		"target":     {Mode: runtimeapi.NamespaceMode_TARGET},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := d.podConfig("refused-" + name)
			cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
			_, err := d.rt.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("RunPodSandbox = %v, want InvalidArgument", err)
			}
		})
	}
	pods, err := d.rt.ListPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 0 {
		t.Fatalf("pods left: %v, %v", pods, err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
