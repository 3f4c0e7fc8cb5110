package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/test/registry"
)

// The side-by-side environment of the pod benchmarks: one test registry,
// one CNI network of the benchmark's own (bridge, subnet and host-local
// store nobody else uses, no masquerade rules to outlive a killed run), and
// skiffd and containerd 1.6 each with its own root, state and socket, both
// pulling through the same mirrors. Every pod the benchmark makes sits in a
// cgroup below cgroupParent, so that clean-up finds what a runtime left.
const (
	benchNet    = "skiff-bench"
	benchBridge = "skiffbench0"
	benchSubnet = "10.214.0.0/16"
	// sandboxImage is the pause image containerd runs; the test registry
	// serves it. skiffd needs none.
	sandboxImage = "registry.k8s.io/pause:3.10"
	// podImage is the image of every benchmark container.
	podImage = "docker.io/library/busybox:1.36"
)

// runtimeUnderTest is one CRI runtime of the run, reached over its socket.
type runtimeUnderTest struct {
	name     string // "Skiff" or "containerd"
	dir      string // its root, state, config and log
	sock     string
	daemon   *daemon
	conn     *grpc.ClientConn
	rt       runtimeapi.RuntimeServiceClient
	img      runtimeapi.ImageServiceClient
	shimExe  string // the shim binary's base name, to find its processes
	shimMark string // a string in every one of its shims' command lines
}

// env is one side-by-side set-up; close undoes all of it.
type env struct {
	tmp          string
	bin          string // skiffd, skiff-shim, skiff-nsenter
	reg          *registry.Registry
	cniDir       string
	cniBinDir    string
	ipamDir      string
	cgroupParent string
	skiff, ctrd  *runtimeUnderTest
	// hostDirs are the directories outside tmp that containerd's shims
	// create whatever its config says, and whether each existed before.
	hostDirs map[string]bool
}

// containerdHostDirs are where containerd 1.6's runc shim keeps its socket
// and runc's state, below the built-in /run/containerd; deepest first.
var containerdHostDirs = []string{"/run/containerd/runc/k8s.io", "/run/containerd/runc", "/run/containerd/s", "/run/containerd"}

// toolsDir is $SKIFF_TOOLS, where hack/critest.sh and hack/node-e2e.sh
// cache critest, busybox and the node e2e binaries.
func toolsDir() string {
	if d := os.Getenv("SKIFF_TOOLS"); d != "" {
		return d
	}
	return "/opt/skiff-tools"
}

// buildSkiff builds skiffd and, through hack/build-shim.sh as every shim
// build goes, skiff-shim with skiff-nsenter beside it, into bin.
func buildSkiff(ctx context.Context, bin string) error {
	if err := goBuild(ctx, filepath.Join(bin, "skiffd"), "./cmd/skiffd"); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "hack/build-shim.sh", filepath.Join(bin, "skiff-shim"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/build-shim.sh: %w", err)
	}
	return nil
}

// newEnv builds Skiff from the checkout into bin (unless bin already holds
// it), then starts the registry and both runtimes. On error it has undone
// what it did.
func newEnv(ctx context.Context, bin string) (_ *env, err error) {
	tmp, err := os.MkdirTemp("", "skiff-bench.")
	if err != nil {
		return nil, err
	}
	// As /run is: the roots of user-namespaced pods walk down to their
	// rootfs under the state dir.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, err
	}
	e := &env{
		tmp:          tmp,
		bin:          bin,
		cniDir:       filepath.Join(tmp, "net.d"),
		ipamDir:      filepath.Join(tmp, "ipam"),
		cgroupParent: "/" + strings.ReplaceAll(filepath.Base(tmp), ".", "-"),
		hostDirs:     map[string]bool{},
	}
	for _, d := range containerdHostDirs {
		e.hostDirs[d] = fileExists(d)
	}
	defer func() {
		if err != nil {
			if cerr := e.close(); cerr != nil {
				fmt.Fprintln(os.Stderr, "bench:", cerr)
			}
		}
	}()
	if !fileExists(filepath.Join(bin, "skiffd")) {
		if err := buildSkiff(ctx, bin); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"/opt/cni/bin", "/usr/lib/cni"} {
		if fileExists(filepath.Join(d, "bridge")) {
			e.cniBinDir = d
			break
		}
	}
	if e.cniBinDir == "" {
		return nil, errors.New("no CNI plugins in /opt/cni/bin or /usr/lib/cni (run hack/setup.sh)")
	}
	if err := e.writeConflist(); err != nil {
		return nil, err
	}
	// Debian's regular busybox, as hack/critest.sh uses, when it is cached.
	opts := registry.Options{}
	if bb := filepath.Join(toolsDir(), "busybox", "bin", "busybox"); fileExists(bb) {
		opts.Busybox = bb
	}
	if e.reg, err = registry.Listen(ctx, "127.0.0.1:0", opts, nil); err != nil {
		return nil, err
	}
	if e.skiff, err = e.startSkiffd(ctx); err != nil {
		return nil, err
	}
	if e.ctrd, err = e.startContainerd(ctx); err != nil {
		return nil, err
	}
	for _, r := range e.runtimes() {
		if err := r.connect(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *env) runtimes() []*runtimeUnderTest {
	var out []*runtimeUnderTest
	for _, r := range []*runtimeUnderTest{e.skiff, e.ctrd} {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// writeConflist writes the one network both runtimes use: the plugins of
// hack/cni/10-skiff-bridge.conflist, on a bridge and subnet of the
// benchmark's own, without ipMasq (its rules would outlive a killed run).
func (e *env) writeConflist() error {
	for _, d := range []string{e.cniDir, e.ipamDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`, benchNet, benchBridge, e.ipamDir, benchSubnet)
	return os.WriteFile(filepath.Join(e.cniDir, "10-skiff-bench.conflist"), []byte(conf), 0o644)
}

func (e *env) startSkiffd(ctx context.Context) (*runtimeUnderTest, error) {
	r := &runtimeUnderTest{name: "Skiff", dir: filepath.Join(e.tmp, "skiff"), shimExe: "skiff-shim"}
	r.sock = filepath.Join(r.dir, "state", "skiff.sock")
	r.shimMark = r.dir
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`root = %q
state = %q
listen = "unix://%s"
cgroup_driver = "cgroupfs"
shim_binary = %q
stream_address = "127.0.0.1:0"

[cni]
conf_dir = %q
bin_dirs = [%q]

%s`, filepath.Join(r.dir, "root"), filepath.Join(r.dir, "state"), r.sock, filepath.Join(e.bin, "skiff-shim"),
		e.cniDir, e.cniBinDir, e.reg.MirrorsTOML())
	path := filepath.Join(r.dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d, err := start(ctx, r.dir, filepath.Join(e.bin, "skiffd"), "--config", path)
	if err != nil {
		return nil, err
	}
	r.daemon = d
	return r, nil
}

// startContainerd configures containerd 1.6 as hack/node-e2e.sh does: runc
// with the cgroupfs driver, overlayfs, the same CNI conf dir and mirrors.
func (e *env) startContainerd(ctx context.Context) (*runtimeUnderTest, error) {
	r := &runtimeUnderTest{name: "containerd", dir: filepath.Join(e.tmp, "containerd"), shimExe: "containerd-shim-runc-v2"}
	r.sock = filepath.Join(r.dir, "containerd.sock")
	r.shimMark = r.sock
	for _, d := range []string{"root", "state", "opt"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	hosts := registry.HostsOf(e.reg.Names())
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %q

[ttrpc]
  address = "%s.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = %q
  conf_dir = %q
  max_conf_num = 1

%s`, filepath.Join(r.dir, "root"), filepath.Join(r.dir, "state"), r.sock, r.sock, filepath.Join(r.dir, "opt"),
		sandboxImage, e.cniBinDir, e.cniDir, registry.ContainerdMirrorsTOML(e.reg.Addr(), hosts))
	path := filepath.Join(r.dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d, err := start(ctx, r.dir, "containerd", "--config", path)
	if err != nil {
		return nil, err
	}
	r.daemon = d
	return r, nil
}

// connect waits for the socket and dials the CRI.
func (r *runtimeUnderTest) connect(ctx context.Context) error {
	if err := waitSocket(ctx, r.sock); err != nil {
		return fmt.Errorf("%s: %w\n%s", r.name, err, r.logTail())
	}
	conn, err := grpc.NewClient("unix://"+r.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial %s: %w", r.name, err)
	}
	r.conn = conn
	r.rt = runtimeapi.NewRuntimeServiceClient(conn)
	r.img = runtimeapi.NewImageServiceClient(conn)
	return nil
}

func (r *runtimeUnderTest) endpoint() string { return "unix://" + r.sock }

func (r *runtimeUnderTest) logTail() string {
	b, _ := exec.Command("tail", "-n", "20", r.daemon.logPath()).CombinedOutput()
	return string(b)
}

// pull makes sure the runtime has each image, so no timing includes a pull.
func (r *runtimeUnderTest) pull(ctx context.Context, images ...string) error {
	for _, ref := range images {
		if _, err := r.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			return fmt.Errorf("%s: pull %s: %w", r.name, ref, err)
		}
	}
	return nil
}

// removeAllPods stops and removes every pod the runtime lists, so that it
// releases IPs, veths, netns, mounts and cgroups its own way.
func (r *runtimeUnderTest) removeAllPods(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("%s: list pods: %w", r.name, err)
	}
	var errs []error
	for _, p := range resp.GetItems() {
		if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("%s: stop pod %s: %w", r.name, p.Id, err))
		}
		if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("%s: remove pod %s: %w", r.name, p.Id, err))
		}
	}
	return errors.Join(errs...)
}

// close removes every pod through its runtime, stops the runtimes and the
// registry, then removes by force what is left: processes started from or
// rooted in the temp dir, containerd's netns in /run/netns, mounts, the
// bridge and the cgroups below the benchmark's parent. What it had to
// remove by force is a leak, and an error: a runtime that leaks under the
// benchmark would leak under the kubelet.
func (e *env) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var leaks []string
	leak := func(what string) { leaks = append(leaks, what) }
	var netns []string
	for _, r := range e.runtimes() {
		if r.conn == nil || !r.daemon.running() {
			continue
		}
		netns = append(netns, r.netnsPaths(ctx)...)
		if err := r.removeAllPods(ctx); err != nil {
			leak(err.Error())
		}
		_ = r.conn.Close()
	}
	for _, r := range e.runtimes() {
		r.daemon.stop()
	}
	if e.reg != nil {
		_ = e.reg.Close()
	}
	for _, pid := range pidsUnder(e.tmp, e.cgroupParent) {
		leak(fmt.Sprintf("killed leftover process %d", pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 50 && len(pidsUnder(e.tmp, e.cgroupParent)) > 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range netns {
		if fileExists(p) {
			leak("removed leftover netns " + p)
			_ = unix.Unmount(p, unix.MNT_DETACH)
			_ = os.Remove(p)
		}
	}
	mounts := mountsUnder(e.tmp)
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		// containerd's shm and rootfs mounts stay until their pods go; a
		// daemon's own bind mounts of its state dir are not leaks.
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	if ents, _ := os.ReadDir(filepath.Join("/sys/class/net", benchBridge, "brif")); len(ents) > 0 {
		leak(fmt.Sprintf("%d leftover veths on %s", len(ents), benchBridge))
	}
	if _, err := net.InterfaceByName(benchBridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", benchBridge).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: clean-up: delete bridge %s: %v: %s\n", benchBridge, err, out)
		}
	}
	// The pod cgroups below the parent are the benchmark's; a cgroup below
	// one of them is a container's the runtime left.
	for _, c := range cgroupsBelowPods(e.cgroupParent) {
		leak("leftover cgroup " + c)
	}
	removeCgroups(e.cgroupParent)
	// Those this run created, if nobody else's containerd uses them now.
	for _, d := range containerdHostDirs {
		if !e.hostDirs[d] {
			_ = os.Remove(d)
		}
	}
	if err := os.RemoveAll(e.tmp); err != nil {
		fmt.Fprintln(os.Stderr, "bench: clean-up:", err)
	}
	if len(leaks) > 0 {
		return fmt.Errorf("clean-up: %s", strings.Join(leaks, "; "))
	}
	return nil
}

// netnsPaths lists the network namespaces of the runtime's pods that live
// outside the temp dir (containerd's, in /var/run/netns), read from the pod
// status before the pods go.
func (r *runtimeUnderTest) netnsPaths(ctx context.Context) []string {
	resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range resp.GetItems() {
		st, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id, Verbose: true})
		if err != nil {
			continue
		}
		for _, v := range st.GetInfo() {
			for _, f := range strings.Split(v, `"`) {
				if strings.HasPrefix(f, "/var/run/netns/") || strings.HasPrefix(f, "/run/netns/") {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// pidsUnder finds processes whose command line names dir (daemons, shims),
// whose root or cwd lies under it, or that sit in a cgroup below
// cgroupParent (container processes), except this one.
func pidsUnder(dir, cgroupParent string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		hit := false
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(dir)) {
			hit = true
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil && bytes.Contains(b, []byte(":"+cgroupParent+"/")) {
			hit = true
		}
		for _, l := range []string{"root", "cwd"} {
			if p, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l)); err == nil && under(p) {
				hit = true
			}
		}
		if hit && !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// cgroupRoots lists the mounted cgroup hierarchies.
func cgroupRoots() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		_, after, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(after); len(fs) > 0 && (fs[0] == "cgroup" || fs[0] == "cgroup2") {
			out = append(out, strings.Fields(l)[4])
		}
	}
	return out
}

// cgroupsBelowPods lists the cgroups two or more levels below parent, in
// any hierarchy.
func cgroupsBelowPods(parent string) []string {
	var out []string
	for _, r := range cgroupRoots() {
		base := filepath.Join(r, parent)
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.Count(strings.TrimPrefix(p, base), "/") >= 2 {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// removeCgroups removes parent and everything below it in every hierarchy,
// deepest first. The runtimes remove their containers' cgroups; the pod
// parents are the benchmark's, as the kubelet's are its own.
func removeCgroups(parent string) {
	for _, r := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(r, parent), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for i := 0; i < 50; i++ {
				if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: clean-up: rmdir cgroup %s: %v\n", d, err)
			}
		}
	}
}
