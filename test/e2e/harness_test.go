package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/config"
	"github.com/skiffcri/skiff/test/registry"
)

const (
	pluginDir = "/usr/lib/cni"
	// netName, bridgeName and subnet are this package's private network;
	// other test packages use other names and subnets.
	netName    = "skiff-e2e"
	bridgeName = "skiffe2e0"
	podSubnet  = "10.98.0.0/24"
	gatewayIP  = "10.98.0.1"

	// busybox is the image most tests run, pulled under its upstream name
	// through the daemon's mirror of the test registry.
	busybox = "docker.io/library/busybox:1.36"
)

// Set up once by TestMain for every test.
var (
	binDir   string             // holds the built skiffd and skiff-shim
	testReg  *registry.Registry // serves the project's test images
	setupErr error              // why the set-up failed, reported by every test
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getuid() != 0 {
		return m.Run() // every test skips
	}
	dir, err := os.MkdirTemp("", "skiff-test-e2e-bin.")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if err := buildBinaries(dir); err != nil {
		setupErr = err
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg, err := registry.Listen(ctx, "127.0.0.1:0", registry.Options{}, nil)
	if err != nil {
		setupErr = fmt.Errorf("test registry: %w", err)
		return m.Run()
	}
	defer reg.Close()
	testReg = reg
	return m.Run()
}

// buildBinaries builds skiffd and skiff-shim from this checkout into dir.
func buildBinaries(dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	modRoot, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	cmd := exec.Command(goBin, "build", "-o", dir+"/", "./cmd/skiffd")
	cmd.Dir = modRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build skiffd: %w\n%s", err, out)
	}
	// The shim as installed: static, with the pre-runtime stage that joins
	// user namespaces.
	cmd = exec.Command(filepath.Join(modRoot, "hack", "build-shim.sh"), filepath.Join(dir, "skiff-shim"))
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":"+filepath.Dir(goBin))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build skiff-shim: %w\n%s", err, out)
	}
	return nil
}

// needRoot skips a test the machine cannot run and fails one whose shared
// set-up broke.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(pluginDir, p)); err != nil {
			t.Skipf("CNI plugin %s missing: %v", p, err)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables missing")
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// daemon is one skiffd with its own root, state, network and registry
// mirrors, reached over the CRI.
type daemon struct {
	t            *testing.T
	dir          string // the temp dir holding everything below
	root, state  string
	logDir       string // pod log directories
	confDir      string // CNI conf dir
	ipamDir      string // host-local dataDir
	configPath   string
	sock         string
	daemonLog    string
	netName      string
	bridge       string
	cgroupParent string // "/skiff-test-e2e-XXXX", under every cgroup hierarchy

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for

	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient

	podIDs []string // every pod this test made, for host-side clean-up
}

// daemonOptions change what startDaemon sets up.
type daemonOptions struct {
	// conflist, if set, replaces the default network config; it gets the
	// daemon so it can use its dirs.
	conflist func(d *daemon) string
	netName  string
	bridge   string
	// runtimes, if set, gives the runtime handlers of the config; it gets
	// the daemon so it can use its dirs.
	runtimes func(d *daemon) map[string]config.RuntimeConfig
	// cdiSpecDirs, if set, replaces the host's CDI spec directories.
	cdiSpecDirs []string
}

// startDaemon runs a skiffd of its own for t: root, state, logs, CNI conf
// and host-local data under a fresh "skiff-test-e2e.*" temp dir, images from
// the test registry through mirrors, pods on the package's bridge. At the
// end of t it removes every pod through the CRI, fails t for anything the
// runtime left behind, stops skiffd and removes by force whatever remains.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonWith(t, daemonOptions{})
}

func startDaemonWith(t *testing.T, opts daemonOptions) *daemon {
	t.Helper()
	needRoot(t)
	dir, err := os.MkdirTemp("", "skiff-test-e2e.")
	if err != nil {
		t.Fatal(err)
	}
	// As /run is: the roots of user-namespaced pods walk down to their
	// rootfs under the state dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		t:            t,
		dir:          dir,
		root:         filepath.Join(dir, "root"),
		state:        filepath.Join(dir, "state"),
		logDir:       filepath.Join(dir, "logs"),
		confDir:      filepath.Join(dir, "net.d"),
		ipamDir:      filepath.Join(dir, "ipam"),
		configPath:   filepath.Join(dir, "config.toml"),
		daemonLog:    filepath.Join(dir, "skiffd.log"),
		netName:      netName,
		bridge:       bridgeName,
		cgroupParent: cgroupParentOf(dir),
	}
	d.sock = filepath.Join(d.state, "skiff.sock")
	if opts.netName != "" {
		d.netName = opts.netName
	}
	if opts.bridge != "" {
		d.bridge = opts.bridge
	}
	// Registered first, so it runs last: after every clean-up the test
	// registered on top of the daemon.
	t.Cleanup(d.cleanup)

	for _, p := range []string{d.logDir, d.confDir, d.ipamDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := d.defaultConflist()
	if opts.conflist != nil {
		conf = opts.conflist(d)
	}
	if err := os.WriteFile(filepath.Join(d.confDir, "10-skiff-e2e.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Root = d.root
	cfg.State = d.state
	cfg.Listen = "unix://" + d.sock
	cfg.LogLevel = "debug"
	cfg.ShimBinary = filepath.Join(binDir, "skiff-shim")
	cfg.Image.Mirrors = testReg.Mirrors()
	cfg.Image.InsecureRegistries = []string{testReg.Addr()}
	cfg.CNI.ConfDir = d.confDir
	cfg.CNI.BinDirs = []string{pluginDir}
	if opts.runtimes != nil {
		cfg.Runtimes = opts.runtimes(d)
	}
	if opts.cdiSpecDirs != nil {
		cfg.CDISpecDirs = opts.cdiSpecDirs
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.configPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start()
	return d
}

// cgroupParentOf is the cgroup parent of the daemon whose temp dir is dir:
// "/skiff-test-e2e-XXXX".
func cgroupParentOf(dir string) string {
	return "/" + strings.ReplaceAll(filepath.Base(dir), ".", "-")
}

// defaultConflist is the package's bridge network: bridge + host-local,
// portmap for hostPorts, loopback for lo.
func (d *daemon) defaultConflist() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}`, d.netName, d.bridge, d.ipamDir, podSubnet)
}

// start runs skiffd and waits until it answers Version.
func (d *daemon) start() {
	t := d.t
	t.Helper()
	logf, err := os.OpenFile(d.daemonLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "skiffd"), "--config", d.configPath)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start skiffd: %v", err)
	}
	logf.Close()
	d.cmd = cmd
	done := make(chan struct{})
	d.done = done
	go func() { _ = cmd.Wait(); close(done) }()

	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial skiffd: %v", err)
	}
	d.conn = conn
	d.rt = runtimeapi.NewRuntimeServiceClient(conn)
	d.img = runtimeapi.NewImageServiceClient(conn)

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("skiffd exited during start-up: %s\n%s", cmd.ProcessState, d.logTail())
		default:
		}
		if _, err := os.Stat(d.sock); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = d.rt.Version(ctx, &runtimeapi.VersionRequest{})
			cancel()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("skiffd did not answer on %s within 60s\n%s", d.sock, d.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail is the end of skiffd's log, for failure messages.
func (d *daemon) logTail() string {
	b, err := os.ReadFile(d.daemonLog)
	if err != nil {
		return "(no skiffd log: " + err.Error() + ")"
	}
	// Successful RPCs are logged at debug level; leave them out.
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "level=DEBUG msg=rpc ") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 60 {
		keep = keep[len(keep)-60:]
	}
	return "--- skiffd log (tail, without successful RPCs) ---\n" + strings.Join(keep, "\n")
}

func (d *daemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *daemon) closeConn() {
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
}

// kill9 kills skiffd with SIGKILL, as a crash would; shims and containers
// live on.
func (d *daemon) kill9() {
	d.t.Helper()
	d.closeConn()
	if !d.running() {
		d.t.Fatal("kill9: skiffd is not running")
	}
	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		d.t.Fatalf("kill -9 skiffd: %v", err)
	}
	<-d.done
}

// stop ends skiffd with SIGTERM, then SIGKILL if it hangs.
func (d *daemon) stop() {
	d.closeConn()
	if !d.running() {
		return
	}
	_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.t.Errorf("skiffd ignored SIGTERM for 20s; killing it")
		_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// restart starts skiffd again on the same root, state and config.
func (d *daemon) restart() {
	d.t.Helper()
	if d.running() {
		d.t.Fatal("restart: skiffd is still running")
	}
	d.start()
}

func ctxT(t *testing.T, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// cleanup removes every pod through the CRI, checks that the runtime
// released everything, then stops the daemon and removes by force what is
// left, so that a failing test does not break the next one.
func (d *daemon) cleanup() {
	t := d.t
	if d.running() && d.conn != nil {
		d.removeAllPods()
		for _, leak := range d.leaks() {
			t.Errorf("leak after removing every pod: %s", leak)
		}
	}
	d.stop()
	if t.Failed() {
		t.Log(d.logTail())
	}
	d.forceCleanup()
}

// removeAllPods stops and removes every pod skiffd lists (best effort).
func (d *daemon) removeAllPods() {
	t := d.t
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Logf("cleanup: list pods: %v", err)
		return
	}
	for _, p := range resp.GetItems() {
		if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("cleanup: stop pod %s: %v", p.Id, err)
		}
		if _, err := d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("cleanup: remove pod %s: %v", p.Id, err)
		}
	}
}

// leaks lists what the runtime still holds on the host though it has no
// pod: mounts (pod namespaces, shm, rootfs) under the temp dir, processes
// started from or rooted in it, veths on the test bridge, host-local IP
// reservations, iptables rules of the test network and pod cgroups.
func (d *daemon) leaks() []string {
	var out []string
	for _, m := range mountsUnder(d.dir) {
		out = append(out, "mount "+m)
	}
	procs := processesUnder(d.dir, d.cmdPid())
	for _, p := range procs {
		out = append(out, "process "+p)
	}
	for _, v := range bridgePorts(d.bridge) {
		out = append(out, "veth "+v+" on bridge "+d.bridge)
	}
	for _, f := range ipReservations(d.ipamDir) {
		out = append(out, "host-local reservation "+f)
	}
	for _, r := range natRules(d.netName, podSubnet) {
		out = append(out, "iptables nat rule "+r)
	}
	// One line per cgroup, however many hierarchies hold it.
	byRel := map[string][]string{}
	var rels []string
	for _, c := range cgroupsUnder(d.cgroupParent) {
		_, rel, _ := strings.Cut(c, d.cgroupParent)
		rel = d.cgroupParent + rel
		if byRel[rel] == nil {
			rels = append(rels, rel)
		}
		byRel[rel] = append(byRel[rel], filepath.Base(strings.TrimSuffix(c, rel)))
	}
	for _, rel := range rels {
		out = append(out, fmt.Sprintf("cgroup %s (in %d hierarchies: %s)", rel, len(byRel[rel]), strings.Join(byRel[rel], " ")))
	}
	for _, f := range d.stateLeft() {
		out = append(out, "state "+f)
	}
	return out
}

// stateLeft lists per-pod and per-container entries left in the state and
// root dirs (namespaces, shim dirs, executor state, exit records, rootfs
// upper dirs, image volume mount points), which a removed pod must not
// leave.
func (d *daemon) stateLeft() []string {
	var out []string
	for _, dir := range []string{
		filepath.Join(d.state, "pods"), filepath.Join(d.state, "ns"), filepath.Join(d.state, "shims"),
		filepath.Join(d.state, "containers"), filepath.Join(d.state, "oci"), filepath.Join(d.root, "containers"),
		filepath.Join(d.state, "image-volumes"),
	} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func (d *daemon) cmdPid() int {
	if d.running() {
		return d.cmd.Process.Pid
	}
	return 0
}

// forceCleanup kills, unmounts and deletes what is left of this daemon.
func (d *daemon) forceCleanup() {
	t := d.t
	for _, p := range processPidsUnder(d.dir, 0) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	// Give the kernel a moment to reap and drop namespace references.
	for i := 0; i < 50 && len(processPidsUnder(d.dir, 0)) > 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	mounts := mountsUnder(d.dir)
	// Deepest first.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("cleanup: umount %s: %v", m, err)
		}
	}
	cleanupIptables(t, d.netName, podSubnet, d.podIDs)
	if _, err := net.InterfaceByName(d.bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", d.bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: delete bridge %s: %v: %s", d.bridge, err, out)
		}
	}
	removeCgroups(t, d.cgroupParent)
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
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
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// processPidsUnder finds processes whose command line names dir (shims,
// skiffd), whose root or cwd lies under it, or that sit in a cgroup below
// "/"+base(dir) with dots as dashes, the daemon's cgroup parent (container
// processes: their root is not visible from the host's mount namespace),
// except skip.
func processPidsUnder(dir string, skip int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == skip {
			continue
		}
		if processUnder(pid, dir) && !orphanZombie(pid, dir) {
			out = append(out, pid)
		}
	}
	return out
}

// orphanZombie reports whether pid is on its way out and only waits for a
// parent that is not the runtime's: a zombie waiting to be reaped, or a
// process past exit whose memory is gone (a pod init that was killed
// waits so, as PID 1 of its namespace, until the namespace's other
// zombies are reaped). The processes of a killed shim are re-parented to
// the host's init, which reaps them in its own time.
func orphanZombie(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return false
	}
	if f[0] != "Z" && f[0] != "X" {
		// Exiting: the kernel dropped its memory, and with it exe.
		_, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return errors.Is(err, os.ErrNotExist)
	}
	ppid, err := strconv.Atoi(f[1])
	return err == nil && !processUnder(ppid, dir)
}

func processUnder(pid int, dir string) bool {
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(dir)) {
		return true
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil && bytes.Contains(b, []byte(":"+cgroupParentOf(dir)+"/")) {
		return true
	}
	for _, l := range []string{"root", "cwd"} {
		if p, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l)); err == nil && under(p) {
			return true
		}
	}
	return false
}

func processesUnder(dir string, skip int) []string {
	var out []string
	for _, pid := range processPidsUnder(dir, skip) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")))
	}
	return out
}

// bridgePorts lists the interfaces enslaved to bridge: the host ends of pod
// veths. A pod that is gone must have none.
func bridgePorts(bridge string) []string {
	ents, err := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// ipReservations lists host-local's per-IP files under dataDir: one per
// allocated address (the lock and last_reserved_ip files are not).
func ipReservations(dataDir string) []string {
	var out []string
	_ = filepath.WalkDir(dataDir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// natRules lists the nat rules that mention the network name (bridge and
// portmap comments) or the pod subnet.
func natRules(name, subnet string) []string {
	out, err := exec.Command("iptables", "-t", "nat", "-S").Output()
	if err != nil {
		return []string{"(iptables -S failed: " + err.Error() + ")"}
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		if mentionsNet(l, name) || strings.Contains(l, subnet) {
			rules = append(rules, l)
		}
	}
	return rules
}

// mentionsNet reports whether an iptables -S rule carries the CNI comment
// of network name; -S prints the quotes inside a comment escaped.
func mentionsNet(rule, name string) bool {
	return strings.Contains(rule, `\"`+name+`\"`) || strings.Contains(rule, `"`+name+`"`)
}

// cleanupIptables deletes the nat rules of the test network and the
// per-pod CNI chains they jump to. Chains shared by every CNI user
// (CNI-HOSTPORT-*) lose only our rules.
func cleanupIptables(t *testing.T, name, subnet string, podIDs []string) {
	marks := append([]string{subnet}, podIDs...)
	out, err := exec.Command("iptables", "-t", "nat", "-S").Output()
	if err != nil {
		t.Errorf("cleanup: iptables -S: %v", err)
		return
	}
	chains := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		hit := mentionsNet(l, name)
		for _, m := range marks {
			if m != "" && strings.Contains(l, m) {
				hit = true
			}
		}
		if !hit {
			continue
		}
		f := strings.Fields(l)
		if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "CNI-") && !strings.HasPrefix(f[i+1], "CNI-HOSTPORT-") {
			chains[f[i+1]] = true
		}
		args := append([]string{"-t", "nat", "-D"}, splitRule(strings.TrimPrefix(l, "-A "))...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			t.Errorf("cleanup: iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for c := range chains {
		_ = exec.Command("iptables", "-t", "nat", "-F", c).Run()
		_ = exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
}

// splitRule splits an iptables -S rule into arguments, honouring the double
// quotes around comments.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQ = !inQ
			have = true
		case c == ' ' && !inQ:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// cgroupRoots lists the mounted cgroup hierarchies (v1 controllers and the
// unified one).
func cgroupRoots() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		_, after, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		fs := strings.Fields(after)
		if len(fs) == 0 || (fs[0] != "cgroup" && fs[0] != "cgroup2") {
			continue
		}
		out = append(out, unescapeMountinfo(strings.Fields(l)[4]))
	}
	return out
}

// cgroupsUnder lists cgroups below parent in every hierarchy: the
// containers' cgroups, which must be gone with the containers.
func cgroupsUnder(parent string) []string {
	var out []string
	for _, r := range cgroupRoots() {
		base := filepath.Join(r, parent)
		_ = filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.IsDir() || p == base {
				return nil
			}
			out = append(out, p)
			return nil
		})
	}
	return out
}

// removeCgroups removes parent and everything below it, deepest first,
// killing processes still inside.
func removeCgroups(t *testing.T, parent string) {
	for _, r := range cgroupRoots() {
		base := filepath.Join(r, parent)
		var dirs []string
		_ = filepath.WalkDir(base, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, dir := range dirs {
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			var err error
			for i := 0; i < 50; i++ {
				if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("cleanup: rmdir cgroup %s: %v", dir, err)
			}
		}
	}
}
