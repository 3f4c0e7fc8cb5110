package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerInfo is the part of ContainerStatus's verbose info tools read.
type containerInfo struct {
	SandboxID   string                      `json:"sandboxID"`
	Pid         int                         `json:"pid"`
	Config      *runtimeapi.ContainerConfig `json:"config"`
	RuntimeSpec *specs.Spec                 `json:"runtimeSpec"`
}

type podInfo struct {
	Pid        int               `json:"pid"`
	ShimPid    int               `json:"shimPid"`
	PidNote    string            `json:"pidNote"`
	Namespaces map[string]string `json:"namespaces"`
	IPs        []string          `json:"ips"`
	CNIResult  json.RawMessage   `json:"cniResult"`
}

func (d *daemon) verboseContainer(t *testing.T, id string) (*runtimeapi.ContainerStatus, containerInfo) {
	t.Helper()
	resp, err := d.rt.ContainerStatus(ctxT(t, 30*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	var info containerInfo
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("ContainerStatus %s: info is not JSON: %v\n%s", id, err, resp.Info["info"])
	}
	return resp.Status, info
}

func (d *daemon) verbosePod(t *testing.T, id string) (*runtimeapi.PodSandboxStatus, podInfo) {
	t.Helper()
	resp, err := d.rt.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	var info podInfo
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("PodSandboxStatus %s: info is not JSON: %v\n%s", id, err, resp.Info["info"])
	}
	return resp.Status, info
}

// cgroupFile reads a file of the cgroup at path in the first hierarchy
// that has it.
func cgroupFile(path string, names ...string) (string, error) {
	for _, r := range cgroupRoots() {
		for _, n := range names {
			if b, err := os.ReadFile(filepath.Join(r, path, n)); err == nil {
				return strings.TrimSpace(string(b)), nil
			}
		}
	}
	return "", fmt.Errorf("no %v in cgroup %s", names, path)
}

// inCgroup reports whether host process pid is in the cgroup at path in
// some hierarchy.
func inCgroup(pid int, path string) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[2] == path {
			return true, nil
		}
	}
	return false, nil
}

func procOOMScoreAdj(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStatusResourcesAndInfo checks what ContainerStatus reports against
// the kernel: the resources in the container's cgroup and process after
// create and after UpdateContainerResources, and a verbose info whose pid
// is the container's process and whose runtimeSpec is the spec it runs.
func TestStatusResourcesAndInfo(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "status")

	const mib = 1 << 20
	cfg := containerConfig("limited", busybox, "sleep", "1000")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 * mib, OomScoreAdj: 500,
	}
	// A negative oom_score_adj needs CAP_SYS_RESOURCE, which root lacks
	// on some hosts: the executor keeps the current value then, and the
	// status must say what the process really has.
	clampedCfg := containerConfig("clamped", busybox, "sleep", "1000")
	clampedCfg.StopSignal = runtimeapi.Signal_SIGNAL_SIGINT
	clampedCfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 * mib, OomScoreAdj: -998}
	id := d.createContainer(t, podID, podCfg, cfg)
	clamped := d.createContainer(t, podID, podCfg, clampedCfg)

	// Created: the init waits at the start barrier with the limits set.
	st, info := d.verboseContainer(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED || info.Pid <= 0 {
		t.Fatalf("created container: state %v, info pid %d", st.State, info.Pid)
	}
	want := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 * mib, OomScoreAdj: 500}
	if got := st.GetResources().GetLinux(); got.String() != want.String() {
		t.Errorf("resources after create = %v, want %v", got, want)
	}
	if st.StopSignal != runtimeapi.Signal_SIGNAL_SIGTERM {
		t.Errorf("stop_signal = %v, want SIGTERM (busybox sets no STOPSIGNAL)", st.StopSignal)
	}

	d.startContainer(t, id)
	d.startContainer(t, clamped)
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	d.waitState(t, clamped, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

	st, info = d.verboseContainer(t, id)
	pid := info.Pid
	if pid <= 0 {
		t.Fatalf("running container: info pid %d", pid)
	}
	// The pid is the container's process on the host: it runs sleep 1000,
	// in the container's cgroup, with the container's oom_score_adj.
	// RUNNING is reported once the start barrier is released; the init
	// may still be on its way to execve, so give it a moment.
	var args []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatalf("info pid %d is not a live process: %v", pid, err)
		}
		args = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if reflect.DeepEqual(args, []string{"sleep", "1000"}) || time.Now().After(deadline) {
			break
		}
	}
	if !reflect.DeepEqual(args, []string{"sleep", "1000"}) {
		t.Errorf("process %d runs %q, want sleep 1000", pid, args)
	}
	if info.RuntimeSpec == nil || info.RuntimeSpec.Linux == nil || info.RuntimeSpec.Process == nil {
		t.Fatalf("runtimeSpec missing or not an OCI spec: %+v", info.RuntimeSpec)
	}
	if !reflect.DeepEqual(info.RuntimeSpec.Process.Args, []string{"sleep", "1000"}) {
		t.Errorf("runtimeSpec args = %q, want the container's", info.RuntimeSpec.Process.Args)
	}
	cgPath := info.RuntimeSpec.Linux.CgroupsPath
	if ok, err := inCgroup(pid, cgPath); err != nil || !ok {
		t.Errorf("process %d is not in the spec's cgroup %s (%v)", pid, cgPath, err)
	}
	if info.SandboxID != podID || info.Config.GetMetadata().GetName() != "limited" {
		t.Errorf("info sandboxID %q config %v", info.SandboxID, info.Config.GetMetadata())
	}
	if got := procOOMScoreAdj(t, pid); got != st.GetResources().GetLinux().GetOomScoreAdj() {
		t.Errorf("status oom_score_adj %d, process has %d", st.GetResources().GetLinux().GetOomScoreAdj(), got)
	}
	if lim, err := cgroupFile(cgPath, "memory.limit_in_bytes", "memory.max"); err != nil || lim != strconv.Itoa(64*mib) {
		t.Errorf("cgroup memory limit %q (%v), want %d", lim, err, 64*mib)
	}

	cst, cinfo := d.verboseContainer(t, clamped)
	applied := procOOMScoreAdj(t, cinfo.Pid)
	if got := cst.GetResources().GetLinux().GetOomScoreAdj(); got != applied {
		t.Errorf("clamped container: status oom_score_adj %d, process has %d", got, applied)
	}
	t.Logf("oom_score_adj -998 asked, %d applied", applied)
	if cst.GetResources().GetLinux().GetMemoryLimitInBytes() != 32*mib || cst.StopSignal != runtimeapi.Signal_SIGNAL_SIGINT {
		t.Errorf("clamped container: resources %v, stop signal %v", cst.GetResources().GetLinux(), cst.StopSignal)
	}

	// Resize as the kubelet does: every field sent again.
	upd := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 80000, CpuShares: 1024, MemoryLimitInBytes: 128 * mib, OomScoreAdj: 500}
	if _, err := d.rt.UpdateContainerResources(ctxT(t, 30*time.Second), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: upd}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	st, info = d.verboseContainer(t, id)
	if got := st.GetResources().GetLinux(); got.String() != upd.String() {
		t.Errorf("resources after update = %v, want %v", got, upd)
	}
	if lim, err := cgroupFile(cgPath, "memory.limit_in_bytes", "memory.max"); err != nil || lim != strconv.Itoa(128*mib) {
		t.Errorf("cgroup memory limit after update %q (%v), want %d", lim, err, 128*mib)
	}
	if q, err := cgroupFile(cgPath, "cpu.cfs_quota_us"); err == nil && q != "80000" {
		t.Errorf("cgroup cpu quota after update %s, want 80000", q)
	}
	if r := info.RuntimeSpec.Linux.Resources; r == nil || r.Memory == nil || *r.Memory.Limit != 128*mib || *r.CPU.Quota != 80000 {
		t.Errorf("runtimeSpec resources after update = %+v", r)
	}

	// Nothing of it lives in skiffd's memory: a killed and restarted
	// daemon reports the same.
	d.kill9()
	d.restart()
	st, info = d.verboseContainer(t, id)
	if got := st.GetResources().GetLinux(); got.String() != upd.String() || info.Pid != pid {
		t.Errorf("after a daemon restart: resources %v pid %d, want %v and %d", got, info.Pid, upd, pid)
	}

	// A stopped container reports no pid, its resources stay.
	if _, err := d.rt.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	st, info = d.verboseContainer(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || info.Pid != 0 || st.GetResources().GetLinux().GetMemoryLimitInBytes() != 128*mib {
		t.Errorf("exited: state %v pid %d resources %v", st.State, info.Pid, st.GetResources().GetLinux())
	}

	// The pod: no init (own PID namespaces), pinned namespaces, CNI result.
	pst, pinfo := d.verbosePod(t, podID)
	if pinfo.Pid != 0 || pinfo.PidNote == "" {
		t.Errorf("pod pid %d note %q: want 0 and why", pinfo.Pid, pinfo.PidNote)
	}
	for _, k := range []string{"net", "ipc", "uts"} {
		if p := pinfo.Namespaces[k]; p == "" {
			t.Errorf("pod info lacks the %s namespace: %v", k, pinfo.Namespaces)
		} else if _, err := os.Stat(p); err != nil {
			t.Errorf("pod %s namespace: %v", k, err)
		}
	}
	if len(pinfo.IPs) == 0 || pinfo.IPs[0] != pst.GetNetwork().GetIp() || !strings.Contains(string(pinfo.CNIResult), pst.GetNetwork().GetIp()+"/") {
		t.Errorf("pod info ips %v, cniResult %s; status ip %s", pinfo.IPs, pinfo.CNIResult, pst.GetNetwork().GetIp())
	}

	// The writable layers' filesystem, as ImageFsInfo and ContainerStats name it.
	if _, err := d.execSync(t, clamped, 10, "dd", "if=/dev/zero", "of=/written", "bs=64k", "count=4"); err != nil {
		t.Fatalf("ExecSync dd: %v", err)
	}
	// Usage is cached and refreshed in the background (at most 10 s
	// old when asked for): the write shows within a refresh or two.
	mountpoint := filepath.Join(d.root, "containers")
	var cfs []*runtimeapi.FilesystemUsage
	var wl *runtimeapi.FilesystemUsage
	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(time.Second) {
		fs, err := d.img.ImageFsInfo(ctxT(t, 30*time.Second), &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatalf("ImageFsInfo: %v", err)
		}
		cfs = fs.GetContainerFilesystems()
		cs, err := d.rt.ContainerStats(ctxT(t, 30*time.Second), &runtimeapi.ContainerStatsRequest{ContainerId: clamped})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		wl = cs.GetStats().GetWritableLayer()
		if len(cfs) == 1 && cfs[0].GetUsedBytes().GetValue() >= 256<<10 && wl.GetUsedBytes().GetValue() >= 256<<10 || time.Now().After(deadline) {
			break
		}
	}
	if len(cfs) != 1 || cfs[0].GetFsId().GetMountpoint() != mountpoint ||
		cfs[0].GetUsedBytes().GetValue() < 256<<10 || cfs[0].GetInodesUsed().GetValue() == 0 {
		t.Errorf("container_filesystems = %v, want %s using >= 256 KiB", cfs, mountpoint)
	}
	if wl.GetFsId().GetMountpoint() != mountpoint || wl.GetUsedBytes().GetValue() < 256<<10 {
		t.Errorf("writable layer = %v", wl)
	}
}

// TestSharedPIDPodInfoPid: a pod sharing one PID namespace reports its
// init's host pid, which is PID 1 of the namespace its containers join.
func TestSharedPIDPodInfoPid(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podCfg := d.podConfig("sharedpid")
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID := d.runPodWith(t, podCfg)
	_, info := d.verbosePod(t, podID)
	if info.Pid <= 0 || info.PidNote != "" {
		t.Fatalf("pod pid %d note %q, want the init's pid", info.Pid, info.PidNote)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", info.Pid))
	if err != nil {
		t.Fatalf("pod init %d: %v", info.Pid, err)
	}
	var nspid, ppid string
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			nspid = strings.Join(strings.Fields(v), " ")
		}
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			ppid = strings.TrimSpace(v)
		}
	}
	// The init is the child of the pod's shim, whose pid the info gives.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", info.ShimPid)); err != nil || filepath.Base(exe) != "skiff-shim" {
		t.Errorf("shimPid %d runs %q (%v), want skiff-shim", info.ShimPid, exe, err)
	}
	if ppid != strconv.Itoa(info.ShimPid) {
		t.Errorf("pod init's parent is %s, want the shim %d", ppid, info.ShimPid)
	}
	if want := strconv.Itoa(info.Pid) + " 1"; nspid != want {
		t.Errorf("pod init NSpid %q, want %q (PID 1 of its own namespace)", nspid, want)
	}
	initNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", info.Pid))
	if err != nil {
		t.Fatal(err)
	}
	id := d.runContainer(t, podID, podCfg, "c", "sleep", "1000")
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	_, cinfo := d.verboseContainer(t, id)
	if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", cinfo.Pid)); err != nil || ns != initNS {
		t.Errorf("container pid %d in PID namespace %q (%v), want the pod init's %q", cinfo.Pid, ns, err, initNS)
	}
}

// TestPodSandboxStatsNetwork: after the host fetched a page from a pod,
// PodSandboxStats reports eth0's counters from the pod's namespace, at
// least as large as the page; a host-network pod reports no network.
func TestPodSandboxStatsNetwork(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "netstats")
	// A 40000-byte page, so that the counters cannot come from elsewhere.
	const size = 40000
	srv := d.runContainer(t, podID, podCfg, "httpd", "sh", "-c",
		fmt.Sprintf("mkdir -p /www && head -c %d /dev/zero | tr '\\0' x > /www/index.html && exec httpd -f -p 0.0.0.0:80 -h /www", size))
	d.waitState(t, srv, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	pst, err := d.rt.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip := pst.GetStatus().GetNetwork().GetIp()
	body, err := httpGetRetry("http://"+ip+":80/index.html", 30*time.Second)
	if err != nil {
		t.Fatalf("GET from the pod at %s: %v", ip, err)
	}
	if len(body) != size {
		t.Fatalf("page of %d bytes, want %d", len(body), size)
	}

	resp, err := d.rt.PodSandboxStats(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("PodSandboxStats: %v", err)
	}
	network := resp.GetStats().GetLinux().GetNetwork()
	def := network.GetDefaultInterface()
	if def.GetName() != "eth0" {
		t.Fatalf("default interface = %v (network %v), want eth0", def, network)
	}
	t.Logf("eth0: rx %d bytes, tx %d bytes, rx errors %d, tx errors %d",
		def.GetRxBytes().GetValue(), def.GetTxBytes().GetValue(), def.GetRxErrors().GetValue(), def.GetTxErrors().GetValue())
	if def.GetTxBytes().GetValue() < size || def.GetRxBytes().GetValue() == 0 {
		t.Errorf("eth0 tx %d rx %d bytes after serving %d bytes", def.GetTxBytes().GetValue(), def.GetRxBytes().GetValue(), size)
	}
	for _, i := range network.GetInterfaces() {
		if i.GetName() == "lo" {
			t.Errorf("interfaces include lo: %v", network.GetInterfaces())
		}
	}
	// The same counters the kernel shows inside the pod.
	out, err := d.execSync(t, srv, 10, "cat", "/sys/class/net/eth0/statistics/tx_bytes")
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if inside, _ := strconv.ParseUint(strings.TrimSpace(string(out.Stdout)), 10, 64); inside < def.GetTxBytes().GetValue() {
		t.Errorf("tx_bytes inside the pod %d < reported %d", inside, def.GetTxBytes().GetValue())
	}

	list, err := d.rt.ListPodSandboxStats(ctxT(t, 30*time.Second), &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxStats: %v", err)
	}
	found := false
	for _, s := range list.GetStats() {
		if s.GetAttributes().GetId() == podID {
			found = s.GetLinux().GetNetwork().GetDefaultInterface().GetTxBytes().GetValue() >= size
		}
	}
	if !found {
		t.Errorf("ListPodSandboxStats lacks the pod's network usage: %v", list)
	}

	hostCfg := d.podConfig("netstats-host")
	hostCfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	hostPod := d.runPodWith(t, hostCfg)
	hresp, err := d.rt.PodSandboxStats(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: hostPod})
	if err != nil {
		t.Fatalf("PodSandboxStats of a host-network pod: %v", err)
	}
	if n := hresp.GetStats().GetLinux().GetNetwork(); n != nil {
		t.Errorf("host-network pod reports network %v, want none", n)
	}
}

// TestUpdateMemoryBelowUsage: lowering a running container's memory limit
// below what it holds is refused with FailedPrecondition (the kernel would
// OOM-kill it on cgroup v2, fail with EBUSY on v1); the container keeps
// running with its limit, and a limit above the usage is applied.
func TestUpdateMemoryBelowUsage(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "shrink")
	c := containerConfig("holder", busybox, "sh", "-c", "head -c 67108864 /dev/zero > /dev/shm/held && echo held && exec sleep 1000")
	c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}
	id := d.createContainer(t, podID, podCfg, c)
	d.startContainer(t, id)
	waitLog(t, filepath.Join(podCfg.LogDirectory, "holder.log"), "stdout", "held", 30*time.Second)

	_, err := d.rt.UpdateContainerResources(ctxT(t, 30*time.Second), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "below") {
		t.Fatalf("UpdateContainerResources to 16 MiB with 64 MiB held: %v, want FailedPrecondition", err)
	}
	st := d.containerStatus(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.GetResources().GetLinux().GetMemoryLimitInBytes() != 256<<20 {
		t.Fatalf("after the refused update: state %v, memory limit %d; want running with 256 MiB", st.State, st.GetResources().GetLinux().GetMemoryLimitInBytes())
	}
	if _, err := d.rt.UpdateContainerResources(ctxT(t, 30*time.Second), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20}}); err != nil {
		t.Fatalf("UpdateContainerResources to 128 MiB: %v", err)
	}
	if got := d.containerStatus(t, id).GetResources().GetLinux().GetMemoryLimitInBytes(); got != 128<<20 {
		t.Fatalf("memory limit after the update = %d, want 128 MiB", got)
	}
}
