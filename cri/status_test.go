package cri

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
)

func TestContainerStatusResources(t *testing.T) {
	full := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
		MemorySwapLimitInBytes: 128 << 20, OomScoreAdj: -997, CpusetCpus: "0-1", CpusetMems: "0",
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "50331648"},
	}
	for _, tc := range []struct {
		name   string
		req    *runtimeapi.LinuxContainerResources
		kernel fakeKernel
		want   *runtimeapi.LinuxContainerResources
	}{
		{
			name:   "all applied",
			req:    full,
			kernel: fakeKernel{minOOM: -997, hugetlb: true},
			want:   full,
		},
		{
			// A kernel refusing a lower oom_score_adj keeps the current
			// one; hugepage limits without a hugetlb controller are skipped.
			name:   "clamped oom_score_adj, no hugetlb controller",
			req:    full,
			kernel: fakeKernel{minOOM: 0, hugetlb: false},
			want: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
				MemorySwapLimitInBytes: 128 << 20, OomScoreAdj: 0, CpusetCpus: "0-1", CpusetMems: "0",
				Unified: map[string]string{"memory.high": "50331648"},
			},
		},
		{
			name:   "memory limit only",
			req:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, OomScoreAdj: 1000},
			kernel: fakeKernel{minOOM: 1000},
			want:   &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, OomScoreAdj: 1000},
		},
		{
			// The process inherits the shim's value when none is asked.
			name:   "nothing asked",
			req:    nil,
			kernel: fakeKernel{minOOM: 5},
			want:   &runtimeapi.LinuxContainerResources{OomScoreAdj: 5},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.s.kernel = tc.kernel
			podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			pod := e.runPod(t, podCfg)
			id := e.createContainer(t, pod, podCfg, ctrConfig("c", tc.req))
			resp, err := e.s.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Status.GetResources().GetLinux(); !proto.Equal(got, tc.want) {
				t.Fatalf("resources = %v\nwant        %v", got, tc.want)
			}
			// The image's STOPSIGNAL, since the config names none.
			if got := resp.Status.StopSignal; got != runtimeapi.Signal_SIGNAL_SIGQUIT {
				t.Errorf("stop_signal = %v, want SIGQUIT", got)
			}
		})
	}
}

func TestRecordUpdate(t *testing.T) {
	created := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 256, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 900,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
	}
	for _, tc := range []struct {
		name    string
		update  *runtimeapi.LinuxContainerResources
		noSpec  bool
		want    *runtimeapi.LinuxContainerResources
		wantErr bool
	}{
		{
			// The kubelet's resize sends every field; oom_score_adj is not
			// rewritten by a cgroup update, so the applied value stays.
			name: "resize cpu and memory",
			update: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 128 << 20, OomScoreAdj: -5,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2 << 20}},
			},
			want: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 128 << 20, OomScoreAdj: 900,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2 << 20}, {PageSize: "1GB", Limit: 0}},
			},
		},
		{
			name:   "fields left out keep their value",
			update: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, CpusetCpus: "1"},
			want: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 256, MemoryLimitInBytes: 32 << 20, OomScoreAdj: 900,
				CpusetCpus:     "1",
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
			},
		},
		{
			name:   "spec gone: from the record",
			update: &runtimeapi.LinuxContainerResources{CpuQuota: 70000},
			noSpec: true,
			want: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 70000, CpuShares: 256, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 900,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.s.kernel = fakeKernel{minOOM: 900, hugetlb: true}
			podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			pod := e.runPod(t, podCfg)
			id := e.createContainer(t, pod, podCfg, ctrConfig("c", created))
			rec, err := e.s.meta.Container(id)
			if err != nil {
				t.Fatal(err)
			}
			if tc.noSpec {
				if err := os.Remove(filepath.Join(rec.Bundle, specFile)); err != nil {
					t.Fatal(err)
				}
			}
			// What UpdateContainerResources hands the cgroup, then records.
			upd, err := spec.Resources(tc.update)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.s.recordUpdate(rec, upd, "/kubepods/p/"+id); err != nil {
				t.Fatal(err)
			}
			resp, err := e.s.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Status.GetResources().GetLinux(); !proto.Equal(got, tc.want) {
				t.Fatalf("resources = %v\nwant        %v", got, tc.want)
			}
			var info containerInfo
			if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
				t.Fatal(err)
			}
			if tc.noSpec {
				if info.RuntimeSpec != nil {
					t.Fatal("runtimeSpec reappeared")
				}
				return
			}
			// The stored spec follows the update too.
			got := criResources(info.RuntimeSpec)
			got.OomScoreAdj = tc.want.OomScoreAdj
			if !proto.Equal(got, tc.want) {
				t.Errorf("runtimeSpec resources = %v\nwant                  %v", got, tc.want)
			}
		})
	}
}

func TestContainerStatusVerboseInfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   func(*ContainerState)
		wantPid bool
	}{
		{name: "created", state: func(*ContainerState) {}, wantPid: true},
		{name: "running", state: func(st *ContainerState) { st.Status = StateRunning }, wantPid: true},
		{name: "exited", state: func(st *ContainerState) { st.Status = StateExited }},
		{name: "unknown", state: func(st *ContainerState) { st.Status = StateUnknown }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
			pod := e.runPod(t, podCfg)
			cfg := ctrConfig("c", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20})
			cfg.StopSignal = runtimeapi.Signal_SIGNAL_SIGUSR1
			id := e.createContainer(t, pod, podCfg, cfg)
			e.shims.set(id, tc.state)
			pid := e.shims.states[id].Pid

			resp, err := e.s.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status.StopSignal != runtimeapi.Signal_SIGNAL_SIGUSR1 {
				t.Errorf("stop_signal = %v, want the config's SIGUSR1", resp.Status.StopSignal)
			}
			raw := resp.Info["info"]
			var info containerInfo
			if err := json.Unmarshal([]byte(raw), &info); err != nil {
				t.Fatalf("info is not JSON: %v\n%s", err, raw)
			}
			if want := 0; tc.wantPid {
				want = pid
				if info.Pid != want || want == 0 {
					t.Errorf("pid = %d, want %d", info.Pid, want)
				}
			} else if info.Pid != 0 {
				t.Errorf("pid = %d, want 0 when nothing runs", info.Pid)
			}
			if info.SandboxID != pod {
				t.Errorf("sandboxID = %q, want %q", info.SandboxID, pod)
			}
			if info.Config.GetMetadata().GetName() != "c" || info.Config.GetLinux().GetResources().GetMemoryLimitInBytes() != 64<<20 {
				t.Errorf("config = %v", info.Config)
			}
			// The spec is the one the shim got.
			sent := e.shims.specs[id].Spec
			if info.RuntimeSpec == nil || !reflect.DeepEqual(info.RuntimeSpec.Process.Args, sent.Process.Args) ||
				info.RuntimeSpec.Linux.CgroupsPath != sent.Linux.CgroupsPath || *info.RuntimeSpec.Linux.Resources.Memory.Limit != 64<<20 {
				t.Errorf("runtimeSpec = %+v, want the generated spec (args %q)", info.RuntimeSpec, sent.Process.Args)
			}
			// The keys tools read from crictl inspect, spelled as containerd does.
			for _, key := range []string{`"sandboxID":`, `"pid":`, `"runtimeSpec":{"ociVersion"`, `"config":{"metadata":{"name":"c"}`} {
				if !strings.Contains(raw, key) {
					t.Errorf("info lacks %s: %s", key, raw)
				}
			}
		})
	}
}

func TestPodSandboxStatusInfo(t *testing.T) {
	for _, tc := range []struct {
		name             string
		pid, net         runtimeapi.NamespaceMode
		stop             bool
		wantPid          bool
		wantNote         string
		wantNS           []string
		wantIPs, wantCNI bool
	}{
		{name: "shared PID namespace", pid: runtimeapi.NamespaceMode_POD, wantPid: true,
			wantNS: []string{"ipc", "net", "pid", "uts"}, wantIPs: true, wantCNI: true},
		{name: "own PID namespaces", pid: runtimeapi.NamespaceMode_CONTAINER, wantNote: "each container has its own PID namespace",
			wantNS: []string{"ipc", "net", "uts"}, wantIPs: true, wantCNI: true},
		{name: "host PID and network", pid: runtimeapi.NamespaceMode_NODE, net: runtimeapi.NamespaceMode_NODE,
			wantNote: "node's PID namespace", wantNS: []string{"ipc"}},
		{name: "stopped", pid: runtimeapi.NamespaceMode_POD, stop: true, wantNote: "not ready",
			wantNS: []string{"ipc", "net", "pid", "uts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			cfg := podConfigFor("p", tc.pid, tc.net)
			pod := e.runPod(t, cfg)
			if tc.stop {
				if _, err := e.s.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := e.s.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			raw := resp.Info["info"]
			var info podInfo
			if err := json.Unmarshal([]byte(raw), &info); err != nil {
				t.Fatalf("info is not JSON: %v\n%s", err, raw)
			}
			if wantShim := !tc.stop; (info.ShimPid == 3000) != wantShim {
				t.Errorf("shimPid = %d, want the shim's (3000) iff the pod is ready", info.ShimPid)
			}
			if tc.wantPid {
				if info.Pid == 0 || info.Pid != e.shims.pods[pod] || info.PidNote != "" {
					t.Errorf("pid = %d (%q), want the pod init's %d", info.Pid, info.PidNote, e.shims.pods[pod])
				}
			} else if info.Pid != 0 || !strings.Contains(info.PidNote, tc.wantNote) {
				t.Errorf("pid = %d, note %q; want 0 and a note saying %q", info.Pid, info.PidNote, tc.wantNote)
			}
			var kinds []string
			for k, p := range info.Namespaces {
				kinds = append(kinds, k)
				if !strings.HasPrefix(p, e.s.podDir(pod)) {
					t.Errorf("namespace %s at %s, not under the pod's directory", k, p)
				}
			}
			if !reflect.DeepEqual(sorted(kinds), tc.wantNS) {
				t.Errorf("namespaces = %v, want kinds %v", info.Namespaces, tc.wantNS)
			}
			if got := len(info.IPs) == 2 && info.IPs[0] == "10.88.0.7"; got != tc.wantIPs {
				t.Errorf("ips = %v", info.IPs)
			}
			if got := len(info.CNIResult) > 0; got != tc.wantCNI {
				t.Errorf("cniResult = %s", info.CNIResult)
			}
			if info.Config.GetMetadata().GetName() != "p" || info.RuntimeHandler != RuntimeName {
				t.Errorf("config = %v, handler %q", info.Config, info.RuntimeHandler)
			}
		})
	}
}

func TestPodSandboxStatsNetwork(t *testing.T) {
	eth0 := InterfaceStats{Name: "eth0", RxBytes: 1500, RxErrors: 1, TxBytes: 900, TxErrors: 2}
	net1 := InterfaceStats{Name: "net1", RxBytes: 7, TxBytes: 8}
	for _, tc := range []struct {
		name        string
		hostNetwork bool
		stop        bool
		ifaces      []InterfaceStats
		err         error
		wantDefault string
		wantIfaces  []string
		wantErr     bool
		// wantNoNetwork: the netns is read and no network is reported.
		wantNoNetwork bool
	}{
		{name: "eth0 is the default", ifaces: []InterfaceStats{net1, eth0}, wantDefault: "eth0", wantIfaces: []string{"net1", "eth0"}},
		{name: "no eth0: the first", ifaces: []InterfaceStats{net1}, wantDefault: "net1", wantIfaces: []string{"net1"}},
		// Only lo (CNI DEL ran while the pod was ready): no network at all,
		// for the kubelet dereferences the default interface of any.
		{name: "no interfaces", ifaces: nil, wantNoNetwork: true},
		{name: "host network reports none", hostNetwork: true, ifaces: []InterfaceStats{eth0}},
		{name: "stopped pod reports none", stop: true, ifaces: []InterfaceStats{eth0}},
		{name: "read error", ifaces: nil, err: errors.New("setns: operation not permitted"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.netStats.ifaces, e.netStats.err = tc.ifaces, tc.err
			netMode := runtimeapi.NamespaceMode_POD
			if tc.hostNetwork {
				netMode = runtimeapi.NamespaceMode_NODE
			}
			pod := e.runPod(t, podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, netMode))
			if tc.stop {
				if _, err := e.s.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := e.s.PodSandboxStats(context.Background(), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), pod) {
					t.Fatalf("err = %v, want one naming the pod", err)
				}
				list, err := e.s.ListPodSandboxStats(context.Background(), &runtimeapi.ListPodSandboxStatsRequest{})
				if err != nil || len(list.Stats) != 0 {
					t.Fatalf("ListPodSandboxStats = %v, %v", list, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			network := resp.Stats.GetLinux().GetNetwork()
			if tc.hostNetwork || tc.stop {
				if network != nil || len(e.netStats.asked) != 0 {
					t.Fatalf("network = %v (asked %q), want none", network, e.netStats.asked)
				}
				return
			}
			if want := e.s.podDir(pod) + "/ns/net"; len(e.netStats.asked) != 1 || e.netStats.asked[0] != want {
				t.Errorf("read netns %q, want %s", e.netStats.asked, want)
			}
			if tc.wantNoNetwork {
				if network != nil {
					t.Fatalf("network = %v, want none", network)
				}
				return
			}
			if network.GetDefaultInterface() == nil {
				t.Fatalf("network %v without a default interface: the kubelet dereferences it", network)
			}
			var names []string
			for _, i := range network.GetInterfaces() {
				names = append(names, i.Name)
			}
			if !reflect.DeepEqual(names, tc.wantIfaces) {
				t.Errorf("interfaces = %q, want %q", names, tc.wantIfaces)
			}
			if got := network.GetDefaultInterface().GetName(); got != tc.wantDefault {
				t.Errorf("default interface = %q, want %q", got, tc.wantDefault)
			}
			if d := network.GetDefaultInterface(); tc.wantDefault == "eth0" &&
				(d.RxBytes.Value != 1500 || d.RxErrors.Value != 1 || d.TxBytes.Value != 900 || d.TxErrors.Value != 2) {
				t.Errorf("eth0 = %v", d)
			}
			list, err := e.s.ListPodSandboxStats(context.Background(), &runtimeapi.ListPodSandboxStatsRequest{})
			if err != nil || len(list.Stats) != 1 || !proto.Equal(list.Stats[0].GetLinux().GetNetwork().GetDefaultInterface(), network.GetDefaultInterface()) {
				t.Errorf("ListPodSandboxStats = %v, %v", list, err)
			}
		})
	}
}

func TestImageFsInfoContainerFilesystems(t *testing.T) {
	e := newTestEnv(t)
	e.images.fs.Mountpoint, e.images.fs.UsedBytes, e.images.fs.InodesUsed = "/var/lib/skiff/layers", 4096, 3
	ctx := context.Background()

	// No container yet: the directory may not exist.
	resp, err := e.s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cf := resp.GetContainerFilesystems(); len(cf) != 1 || cf[0].GetUsedBytes().GetValue() != 0 || cf[0].GetFsId().GetMountpoint() != e.s.rootfsRoot {
		t.Fatalf("container_filesystems = %v", cf)
	}

	// Two writable layers with data, one hardlinked file.
	for _, id := range []string{"a", "b"} {
		upper := filepath.Join(e.s.rootfsRoot, id, "upper")
		if err := os.MkdirAll(filepath.Join(e.s.rootfsRoot, id, "work"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(upper, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(upper, "data"), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(e.s.rootfsRoot, "a/upper/data"), filepath.Join(e.s.rootfsRoot, "a/upper/link")); err != nil {
		t.Fatal(err)
	}
	// The usage is cached: the next call still answers the old value and
	// starts a refresh once it is old; a later one sees the new usage.
	e.s.layers.now = func() time.Time { return time.Now().Add(time.Hour) }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if resp, err = e.s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{}); err != nil {
			t.Fatal(err)
		}
		if resp.GetContainerFilesystems()[0].GetInodesUsed().GetValue() != 0 || time.Now().After(deadline) {
			break
		}
	}
	img := resp.GetImageFilesystems()
	if len(img) != 1 || img[0].GetFsId().GetMountpoint() != "/var/lib/skiff/layers" || img[0].GetUsedBytes().GetValue() != 4096 || img[0].GetInodesUsed().GetValue() != 3 {
		t.Errorf("image_filesystems = %v", img)
	}
	cf := resp.GetContainerFilesystems()
	// root, 2 x (id, upper, work, data)
	if len(cf) != 1 || cf[0].GetUsedBytes().GetValue() < 2*64<<10 || cf[0].GetInodesUsed().GetValue() != 9 || cf[0].Timestamp == 0 {
		t.Errorf("container_filesystems = %v, want >= 128 KiB and 9 inodes", cf)
	}
}

// The spec written at create round-trips as an OCI spec.
func TestWriteReadSpec(t *testing.T) {
	e := newTestEnv(t)
	podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	id := e.createContainer(t, e.runPod(t, podCfg), podCfg, ctrConfig("c", nil))
	rec, err := e.s.meta.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readSpec(rec)
	if err != nil {
		t.Fatal(err)
	}
	var want specs.Spec
	b, _ := json.Marshal(e.shims.specs[id].Spec)
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("stored spec differs from the one sent to the shim")
	}
	if fi, err := os.Stat(filepath.Join(rec.Bundle, specFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("spec file: %v, %v", fi, err)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestUpdateContainerResources checks the RPC's path: the resources go to
// the pod's shim (its executor writes the cgroup), and only an update the
// shim applied is recorded.
func TestUpdateContainerResources(t *testing.T) {
	e := newTestEnv(t)
	podCfg := podConfigFor("p", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	pod := e.runPod(t, podCfg)
	id := e.createContainer(t, pod, podCfg, ctrConfig("c", &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 64 << 20}))
	ctx := context.Background()
	status := func() *runtimeapi.LinuxContainerResources {
		t.Helper()
		resp, err := e.s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status.GetResources().GetLinux()
	}

	e.shims.updateErr = errdefs.InvalidArgument("cgroup \"/kubepods/p/%s\": unified resources need cgroup v2", id)
	upd := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 128 << 20}
	_, err := e.s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: upd})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "update resources of container "+id+": ") {
		t.Fatalf("failed update: %v, want the shim's invalid argument, named by container", err)
	}
	if got := status(); got.GetCpuShares() != 256 || got.GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("a failed update was recorded: %v", got)
	}

	e.shims.updateErr = nil
	if _, err := e.s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: upd}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	want, err := spec.Resources(upd)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.shims.updates[id]; len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("the shim got %+v, want one update of %+v", got, want)
	}
	if got := status(); got.GetCpuShares() != 512 || got.GetMemoryLimitInBytes() != 128<<20 {
		t.Errorf("after the update the status has %v", got)
	}

	if _, err := e.s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "nope", Linux: upd}); !errdefs.IsNotFound(err) {
		t.Errorf("update of an unknown container: %v, want NotFound", err)
	}
}

// TestRuntimeHandlers: configured handlers are accepted by RunPodSandbox and
// listed by Status beside the default, each with its own features; an
// unknown handler is NotFound; a pod that needs a feature its handler lacks
// is refused before anything is made.
func TestRuntimeHandlers(t *testing.T) {
	e := newTestEnv(t)
	e.s.handlers = sortedHandlers([]RuntimeHandler{
		{Name: "test-handler", Features: Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
		{Name: "runc", Features: Features{RecursiveReadOnlyMounts: true}},
	})
	e.s.features = Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	ctx := context.Background()
	for _, h := range []string{"", RuntimeName, "test-handler", "runc"} {
		cfg := podConfigFor("h-"+strings.ReplaceAll(h, "-", ""), runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
		if _, err := e.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: h}); err != nil {
			t.Errorf("RunPodSandbox with handler %q: %v", h, err)
		}
		if got := e.shims.lastHandler(); got != h {
			t.Errorf("shim started for handler %q, want %q", got, h)
		}
	}
	cfg := podConfigFor("unknown", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	_, err := e.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "runsc"})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"runsc"`) {
		t.Errorf("RunPodSandbox with an unknown handler = %v, want NotFound naming it", err)
	}
	if got := grpcCode(err); got != codes.NotFound {
		t.Errorf("unknown handler answers %v, want NotFound", got)
	}

	userns := podConfigFor("userns", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)
	userns.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
	pods := len(e.shims.pods)
	if _, err := e.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: userns, RuntimeHandler: "runc"}); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "user namespaces") {
		t.Errorf("user-namespaced pod on runc = %v, want FailedPrecondition about user namespaces", err)
	}
	if len(e.shims.pods) != pods {
		t.Errorf("a refused pod started a shim")
	}

	resp, err := e.s.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]bool{"": {true, true}, "runc": {true, false}, "test-handler": {true, true}}
	var names []string
	for _, h := range resp.RuntimeHandlers {
		names = append(names, h.Name)
		f := h.Features
		if w := want[h.Name]; f.GetRecursiveReadOnlyMounts() != w[0] || f.GetUserNamespaces() != w[1] {
			t.Errorf("handler %q reports features %v, want rro %v userns %v", h.Name, f, w[0], w[1])
		}
	}
	if strings.Join(names, ",") != ",runc,test-handler" {
		t.Errorf("Status lists handlers %q, want the default, runc and test-handler", names)
	}
}
