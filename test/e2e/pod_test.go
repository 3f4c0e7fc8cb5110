package e2e

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodLifecycle(t *testing.T) {
	d := startDaemon(t)
	ctx := ctxT(t, 5*time.Minute)

	id, cfg := d.runPod(t, "lifecycle")
	other, _ := d.runPod(t, "other")

	st, err := d.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("PodSandboxStatus: state %s, want READY", st.Status.State)
	}
	if !proto.Equal(st.Status.Metadata, cfg.Metadata) {
		t.Errorf("PodSandboxStatus: metadata %v, want %v", st.Status.Metadata, cfg.Metadata)
	}
	ipStr := st.Status.GetNetwork().GetIp()
	ip, err := netip.ParseAddr(ipStr)
	if err != nil || !netip.MustParsePrefix(podSubnet).Contains(ip) {
		t.Fatalf("PodSandboxStatus: pod IP %q, want one in %s", ipStr, podSubnet)
	}
	ipFile := filepath.Join(d.ipamDir, d.netName, ipStr)
	if _, err := os.Stat(ipFile); err != nil {
		t.Errorf("host-local has no reservation for the pod IP: %v", err)
	}
	netns := st.Status.GetLinux().GetNamespaces().GetOptions()
	if netns.GetNetwork() != runtimeapi.NamespaceMode_POD {
		t.Errorf("PodSandboxStatus: network namespace mode %s, want POD", netns.GetNetwork())
	}
	// The leak checks of the clean-up must see what a live pod holds.
	if len(mountsUnder(d.state)) == 0 {
		t.Errorf("leak check sees no mount under the state dir while a pod runs (namespace bind mounts expected)")
	}
	if len(processesUnder(d.dir, d.cmdPid())) == 0 {
		t.Errorf("leak check sees no process under the temp dir while a pod runs (its shim expected)")
	}
	if len(bridgePorts(d.bridge)) != 2 {
		t.Errorf("leak check sees veths %v on %s, want the two pods'", bridgePorts(d.bridge), d.bridge)
	}
	if len(ipReservations(d.ipamDir)) != 2 {
		t.Errorf("leak check sees IP reservations %v, want the two pods'", ipReservations(d.ipamDir))
	}
	byComment := 0
	for _, r := range natRules(d.netName, podSubnet) {
		if mentionsNet(r, d.netName) {
			byComment++
		}
	}
	if byComment == 0 {
		t.Errorf("leak check sees no nat rule commented with network %q while pods run (bridge ipMasq rules expected): %q", d.netName, natRules(d.netName, podSubnet))
	}

	list := func(f *runtimeapi.PodSandboxFilter) []string {
		t.Helper()
		resp, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatalf("ListPodSandbox %v: %v", f, err)
		}
		var ids []string
		for _, p := range resp.Items {
			ids = append(ids, p.Id)
		}
		return ids
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(sorted(got), ",") != strings.Join(sorted(want), ",") {
			t.Errorf("ListPodSandbox %s: got %v, want %v", what, got, want)
		}
	}
	same("all", list(nil), id, other)
	same("by id", list(&runtimeapi.PodSandboxFilter{Id: id}), id)
	same("by id prefix", list(&runtimeapi.PodSandboxFilter{Id: id[:12]}), id)
	same("ready", list(&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}), id, other)
	same("by label", list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "lifecycle"}}), id)
	same("by shared label", list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"suite": "e2e"}}), id, other)
	same("by unmatched label", list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "none"}}))

	// Same metadata while the first exists: AlreadyExists.
	_, err = d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: d.podConfig("lifecycle")})
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("second RunPodSandbox with the same metadata: %v, want AlreadyExists", err)
	}
	// Unknown runtime handler: NotFound, as containerd and CRI-O answer.
	_, err = d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: d.podConfig("handler"), RuntimeHandler: "skiff-e2e-no-such-handler"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("RunPodSandbox with an unknown handler: %v, want NotFound", err)
	}

	// Stop: the IP goes back to host-local, the pod is NOTREADY.
	for i := 0; i < 2; i++ {
		if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(ipFile); !os.IsNotExist(err) {
		t.Errorf("after StopPodSandbox the IP reservation %s is still there (err %v)", ipFile, err)
	}
	same("notready", list(&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}), id)
	st, err = d.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus after stop: %v", err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("PodSandboxStatus after stop: state %s, want NOTREADY", st.Status.State)
	}

	// Remove: no mount of the pod is left, it is no longer listed, and
	// removing again succeeds.
	for i := 0; i < 2; i++ {
		if _, err := d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox #%d: %v", i+1, err)
		}
	}
	for _, m := range mountsUnder(d.state) {
		if strings.Contains(m, id) {
			t.Errorf("after RemovePodSandbox a mount of the pod is left: %s", m)
		}
	}
	same("after remove", list(nil), other)
	if _, err := d.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus of a removed pod: %v, want NotFound", err)
	}
	// Its name is free again.
	again, _ := d.runPod(t, "lifecycle")
	if again == id {
		t.Errorf("a new pod reused the removed pod's ID %s", id)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func TestCNIFailureLeavesNothing(t *testing.T) {
	const missing = "skiff-e2e-no-such-plugin"
	d := startDaemonWith(t, daemonOptions{
		netName: "skiff-e2e-fail",
		bridge:  "skiffe2e1",
		conflist: func(d *daemon) string {
			return `{
  "cniVersion": "1.0.0",
  "name": "skiff-e2e-fail",
  "plugins": [
    {"type": "bridge", "bridge": "skiffe2e1", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "dataDir": "` + d.ipamDir + `", "ranges": [[{"subnet": "` + podSubnet + `"}]]}},
    {"type": "` + missing + `"},
    {"type": "loopback"}
  ]
}`
		},
	})
	ctx := ctxT(t, 5*time.Minute)
	_, err := d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: d.podConfig("cnifail")})
	if err == nil {
		t.Fatal("RunPodSandbox succeeded though the network's second plugin does not exist")
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("RunPodSandbox error does not name the missing plugin %q: %v", missing, err)
	}
	t.Logf("RunPodSandbox failed as expected: %v", err)

	for _, m := range mountsUnder(d.dir) {
		t.Errorf("mount left after the failed RunPodSandbox: %s", m)
	}
	for _, f := range ipReservations(d.ipamDir) {
		t.Errorf("IP reservation left after the failed RunPodSandbox: %s", f)
	}
	for _, v := range bridgePorts(d.bridge) {
		t.Errorf("veth left on bridge %s after the failed RunPodSandbox: %s", d.bridge, v)
	}
	for _, p := range processesUnder(d.dir, d.cmdPid()) {
		t.Errorf("process left after the failed RunPodSandbox: %s", p)
	}
	if ents, err := os.ReadDir(filepath.Join(d.state, "pods")); err == nil && len(ents) > 0 {
		t.Errorf("pod state dirs left after the failed RunPodSandbox: %v", ents)
	}
	resp, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	if len(resp.Items) != 0 {
		t.Errorf("ListPodSandbox after the failed RunPodSandbox: %v", resp.Items)
	}
	// The name is free: a retry fails the same way, not with AlreadyExists.
	_, err = d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: d.podConfig("cnifail")})
	if err == nil || status.Code(err) == codes.AlreadyExists {
		t.Errorf("retried RunPodSandbox: %v, want the same network failure", err)
	}
}

// TestNonCleanLogDirectoryRefused runs a pod whose log directory climbs out
// of the kubelet's with "..": RunPodSandbox refuses it with InvalidArgument,
// leaves no pod behind, and nothing appears where the path leads.
func TestNonCleanLogDirectoryRefused(t *testing.T) {
	d := startDaemon(t)
	outside := filepath.Join(d.dir, "outside")
	for _, dir := range []string{
		filepath.Join(d.logDir, "pod") + "/../../outside",
		"relative/logs",
	} {
		cfg := d.podConfig("bad-log-dir")
		cfg.LogDirectory = dir
		_, err := d.rt.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("RunPodSandbox with log directory %q = %v, want InvalidArgument", dir, err)
		}
	}
	resp, err := d.rt.ListPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Items) != 0 {
		t.Errorf("refused RunPodSandbox left %d pods", len(resp.Items))
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after the refused pod: %v", outside, err)
	}

	// A CreateContainer whose copy of the pod config names another log
	// directory logs where the pod was created to log, nowhere else.
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "good-log-dir")
	forged := proto.Clone(podCfg).(*runtimeapi.PodSandboxConfig)
	forged.LogDirectory = podCfg.LogDirectory + "/../../outside"
	cfg := containerConfig("c", busybox, "echo", "hello")
	cfg.Linux.SecurityContext.NamespaceOptions = podCfg.Linux.SecurityContext.NamespaceOptions
	id := d.createContainer(t, podID, forged, cfg)
	d.startContainer(t, id)
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	waitLog(t, filepath.Join(podCfg.LogDirectory, "c.log"), "stdout", "hello", 10*time.Second)
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after CreateContainer with a forged pod config: %v", outside, err)
	}
}
