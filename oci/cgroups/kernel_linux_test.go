package cgroups

// Root tests against the real kernel. They create cgroups only under a
// "skiff-test-<random>" parent and remove them (killing their processes
// first) in t.Cleanup, also when the test fails.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const busybox = "/usr/bin/busybox"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("needs busybox")
	}
}

func testParent(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "/skiff-test-" + hex.EncodeToString(b)
}

// newTestCgroup creates parent/ctr and registers cleanup of both.
func newTestCgroup(t *testing.T, l *Layout) *Manager {
	t.Helper()
	parent := testParent(t)
	m, err := l.New(parent + "/ctr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.KillAll(ctx, unix.SIGKILL)
		// Wait for the processes to leave so rmdir succeeds.
		for ctx.Err() == nil {
			if p, err := m.Pids(); err != nil || len(p) == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		pm, err := l.Load(parent)
		if err != nil {
			return
		}
		if err := pm.Destroy(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return m
}

// startWaiting starts a busybox shell that runs script after it reads one
// line from stdin, so the test can put it into a cgroup first.
func startWaiting(t *testing.T, script string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(busybox, "sh", "-c", "read go; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, in
}

func procCgroup(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("/proc", itoa(int64(pid)), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ParseProcCgroup(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func hostLayout(t *testing.T) *Layout {
	t.Helper()
	l, err := DetectLayout()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestKernelLimitsAndOOM(t *testing.T) {
	needRoot(t)
	l := hostLayout(t)
	m := newTestCgroup(t, l)
	limit := int64(32 << 20)
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(16))},
		CPU:    &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Cpus: "0", Mems: "0"},
		// On a hybrid host whose hugetlb controller sits on the cgroup2
		// mount this must be skipped without error.
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	if l.Mode == Unified {
		for f, want := range map[string]string{"memory.max": "33554432", "pids.max": "16", "cpu.max": "50000 100000", "cpuset.cpus": "0"} {
			if got := readFile(t, filepath.Join(m.Path(""), f)); got != want {
				t.Errorf("%s = %q, want %q", f, got, want)
			}
		}
	} else {
		for ctl, files := range map[string]map[string]string{
			"memory": {"memory.limit_in_bytes": "33554432"},
			"pids":   {"pids.max": "16"},
			"cpu":    {"cpu.shares": "512", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"},
			"cpuset": {"cpuset.cpus": "0"},
		} {
			for f, want := range files {
				if got := readFile(t, filepath.Join(m.Path(ctl), f)); got != want {
					t.Errorf("%s/%s = %q, want %q", ctl, f, got, want)
				}
			}
		}
		if exists(filepath.Join(m.Path("memory"), "memory.memsw.limit_in_bytes")) {
			if got := readFile(t, filepath.Join(m.Path("memory"), "memory.memsw.limit_in_bytes")); got != "33554432" {
				t.Errorf("memsw = %q", got)
			}
		}
	}

	// A process that allocates and touches 64 MiB must be OOM-killed.
	cmd, in := startWaiting(t, busybox+" dd if=/dev/zero of=/dev/null bs=64M count=1")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	cg := procCgroup(t, cmd.Process.Pid)
	for _, c := range []string{"memory", "pids", "cpu"} {
		if l.Mode == Unified {
			c = ""
		}
		if cg[c] != m.CgroupPath() {
			t.Errorf("/proc/%d/cgroup %q = %q, want %q", cmd.Process.Pid, c, cg[c], m.CgroupPath())
		}
	}
	pids, err := m.Pids()
	if err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Pids = %v, %v; want to contain %d", pids, err, cmd.Process.Pid)
	}
	before, err := m.OOMKillCount()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(in, "go\n")
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("hog exited with %v, want a failure", err)
	}
	after, err := m.OOMKillCount()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("OOM kill count %d -> %d, want an increase (hog exit: %v)", before, after, err)
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.OOMKills != after || st.Memory.Limit != uint64(limit) || st.Pids.Limit != 16 {
		t.Errorf("stats = %+v", st)
	}
	if st.CPU.UsageNanos == 0 {
		t.Errorf("cpu usage is zero after running a process: %+v", st.CPU)
	}
	// The limits as set, read back the way cAdvisor reports a spec; the
	// hog pushed usage to the limit, so the high-water mark is there too.
	wantShares := uint64(512)
	if l.Mode == Unified {
		wantShares = WeightToShares(SharesToWeight(512))
	}
	if lim := st.Limits; lim.CPUShares != wantShares || lim.CPUQuota != 50000 || lim.CPUPeriod != 100000 {
		t.Errorf("cpu limits = %+v, want shares %d, quota 50000, period 100000", lim, wantShares)
	}
	if st.Memory.MaxUsage < uint64(limit)/2 || st.Memory.MaxUsage > uint64(limit) {
		t.Errorf("max usage = %d, want near the %d limit the hog hit", st.Memory.MaxUsage, limit)
	}
	// Every cgroup2 cgroup has pressure files, on a hybrid host too.
	if d := m.Path(""); d != "" && exists(filepath.Join(d, "cpu.pressure")) && st.PSI == nil {
		t.Errorf("no PSI read though %s/cpu.pressure exists", d)
	}
}

func TestKernelKillAllAndDestroy(t *testing.T) {
	needRoot(t)
	l := hostLayout(t)
	m := newTestCgroup(t, l)
	cmd, in := startWaiting(t, busybox+" sleep 1000 & "+busybox+" sleep 1000 & wait")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(in, "go\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var pids []int
	for {
		var err error
		pids, err = m.Pids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= 3 {
			break
		}
		if sleep(ctx, 5*time.Millisecond) != nil {
			t.Fatalf("only %v in the cgroup, want the shell and two sleeps", pids)
		}
	}

	if err := m.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Mode != Unified {
		if got := readFile(t, filepath.Join(m.Path("freezer"), "freezer.state")); got != "FROZEN" {
			t.Errorf("freezer.state = %q", got)
		}
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}

	if err := m.KillAll(ctx, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("shell ended with %v, want SIGKILL", err)
	}
	for {
		pids, err := m.Pids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 0 {
			break
		}
		if sleep(ctx, 5*time.Millisecond) != nil {
			t.Fatalf("processes left after KillAll: %v", pids)
		}
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range m.dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Destroy (%v)", d, err)
		}
	}
	// Destroy is idempotent.
	if err := m.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

// TestKernelV2CoreFiles drives the v2 code paths that need no controller
// (membership, cgroup.freeze, cgroup.events, cgroup.kill, cpu.stat) on the
// real cgroup2 mount. On a hybrid host the test treats a throwaway
// directory of the cgroup2 hierarchy as the root of a unified layout, so
// nothing is enabled in the host's root subtree_control.
func TestKernelV2CoreFiles(t *testing.T) {
	needRoot(t)
	host := hostLayout(t)
	if host.Unified == "" {
		t.Skip("no cgroup2 hierarchy mounted")
	}
	base := filepath.Join(host.Unified, strings.TrimPrefix(testParent(t), "/"))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = kernelFS{}.removeTree(ctx, base)
	})
	l := &Layout{Mode: Unified, Unified: base, V1: map[string]string{}}
	m := newTestCgroup(t, l)
	if !exists(filepath.Join(m.Path(""), "cgroup.kill")) {
		t.Skip("kernel has no cgroup.kill")
	}
	cmd, in := startWaiting(t, busybox+" sleep 1000 & wait")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got := procCgroup(t, cmd.Process.Pid)[""]; !strings.HasSuffix(got, m.CgroupPath()) {
		t.Errorf("/proc/pid/cgroup v2 entry = %q, want suffix %q", got, m.CgroupPath())
	}
	_, _ = io.WriteString(in, "go\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		pids, err := m.Pids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= 2 {
			break
		}
		if sleep(ctx, 5*time.Millisecond) != nil {
			t.Fatalf("pids = %v, want shell and sleep", pids)
		}
	}
	if err := m.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if st := readFile(t, filepath.Join("/proc", itoa(int64(cmd.Process.Pid)), "stat")); !strings.Contains(st, ") S ") && !strings.Contains(st, ") D ") {
		t.Logf("frozen shell state: %s", st)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stats(); err != nil {
		t.Errorf("Stats on a controller-less v2 cgroup: %v", err)
	}
	if err := m.KillAll(ctx, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Errorf("shell not killed by signal: %v", cmd.ProcessState)
	}
	for {
		pids, err := m.Pids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 0 {
			break
		}
		if sleep(ctx, 5*time.Millisecond) != nil {
			t.Fatalf("processes left after cgroup.kill: %v", pids)
		}
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

// v2Scratch returns a unified layout rooted at a throwaway directory of
// the host's cgroup2 hierarchy (see TestKernelV2CoreFiles).
func v2Scratch(t *testing.T) *Layout {
	t.Helper()
	host := hostLayout(t)
	if host.Unified == "" {
		t.Skip("no cgroup2 hierarchy mounted")
	}
	base := filepath.Join(host.Unified, strings.TrimPrefix(testParent(t), "/"))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = kernelFS{}.removeTree(ctx, base)
	})
	return &Layout{Mode: Unified, Unified: base, V1: map[string]string{}}
}

// runIn runs a busybox script inside the cgroup and returns its output.
func runIn(t *testing.T, m *Manager, script string) string {
	t.Helper()
	cmd := exec.Command(busybox, "sh", "-c", "read go; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(in, "go\n")
	_ = cmd.Wait()
	return strings.TrimSpace(out.String())
}

// TestKernelV2DeviceProgram attaches the generated eBPF device filter to a
// real cgroup2 directory and checks what a process inside may open.
func TestKernelV2DeviceProgram(t *testing.T) {
	needRoot(t)
	m := newTestCgroup(t, v2Scratch(t))
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rwm"}, // null
		{Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(5)), Access: "r"},   // zero, read only
	}
	if err := m.Set(&specs.LinuxResources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	script := `(echo x > /dev/null) 2>/dev/null && echo null=ok || echo null=denied; ` +
		`head -c1 /dev/zero >/dev/null 2>&1 && echo zeroread=ok || echo zeroread=denied; ` +
		`(echo x > /dev/zero) 2>/dev/null && echo zerowrite=ok || echo zerowrite=denied; ` +
		`head -c1 /dev/urandom >/dev/null 2>&1 && echo urandom=ok || echo urandom=denied`
	want := "null=ok\nzeroread=ok\nzerowrite=denied\nurandom=denied"
	if got := runIn(t, m, script); got != want {
		t.Errorf("with filter:\n%s\nwant\n%s", got, want)
	}
	// Updating replaces the program rather than stacking a second one.
	if err := m.Set(&specs.LinuxResources{Devices: append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptr(int64(1)), Access: "rw"})}); err != nil {
		t.Fatal(err)
	}
	cg, err := unix.Open(m.Path(""), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cg)
	ids, err := queryDevicePrograms(cg)
	if err != nil || len(ids) != 1 {
		t.Errorf("attached device programs after update: %v, %v; want exactly one", ids, err)
	}
	want = "null=ok\nzeroread=ok\nzerowrite=ok\nurandom=ok"
	if got := runIn(t, m, script); got != want {
		t.Errorf("after update:\n%s\nwant\n%s", got, want)
	}
}

// TestKernelMemoryUpdateOrder raises and lowers memory and memory+swap
// together: the kernel insists on memory <= memory+swap after every
// single write, so the order must flip between the two directions.
func TestKernelMemoryUpdateOrder(t *testing.T) {
	needRoot(t)
	l := hostLayout(t)
	if l.Mode == Unified {
		t.Skip("v1 ordering")
	}
	m := newTestCgroup(t, l)
	if !exists(filepath.Join(m.Path("memory"), "memory.memsw.limit_in_bytes")) {
		t.Skip("no swap accounting")
	}
	for _, mb := range []int64{32, 128, 16, 64} {
		v := mb << 20
		if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &v, Swap: &v}}); err != nil {
			t.Fatalf("%d MiB: %v", mb, err)
		}
		for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
			if got := readFile(t, filepath.Join(m.Path("memory"), f)); got != itoa(v) {
				t.Errorf("%d MiB: %s = %s", mb, f, got)
			}
		}
	}
	unlimited := int64(-1)
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &unlimited}}); err != nil {
		t.Fatalf("unlimited: %v", err)
	}
	if n, err := m.readUint(m.Path("memory"), "memory.memsw.limit_in_bytes"); err != nil || n < 1<<60 {
		t.Errorf("memsw after unlimited = %d, %v", n, err)
	}
}

// TestHostReadsOnce: a Host reads this process's cgroup mounts once and
// then answers from what it read, the same layout DetectLayout reads.
func TestHostReadsOnce(t *testing.T) {
	want, err := DetectLayout()
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	var h Host
	m1, err := h.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.Layout()
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode != want.Mode || l.Unified != want.Unified || !maps.Equal(l.V1, want.V1) {
		t.Errorf("Host layout %+v, want %+v", l, want)
	}
	m2, err := h.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(m1) == 0 || &m1[0] != &m2[0] {
		t.Errorf("second Mounts read again (%d mounts)", len(m1))
	}
}
