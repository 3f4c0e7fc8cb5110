package cgroups

// These tests run the Manager against simFS, a simulation of cgroupfs over
// a temporary directory (a Layout's fs seam; production code never takes
// another path for them). They check which
// files get which values; they do not prove the kernel accepts them. The v2
// resource files (cpu.weight, cpu.max, memory.max, memory.swap.max, io.*,
// pids.max, hugetlb, subtree_control) ran only against such a fake tree on
// the development host, which is cgroup v1 hybrid with no controllers on its
// cgroup2 mount. The v2 core files (cgroup.procs, cgroup.freeze,
// cgroup.events, cgroup.kill, cpu.stat) and the eBPF device filter are also
// exercised on the real cgroup2 mount by kernel_linux_test.go.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func fakeV2(t *testing.T) *Layout {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n")
	writeFile(t, filepath.Join(root, "cgroup.subtree_control"), "")
	return &Layout{Mode: Unified, Unified: root, V1: map[string]string{}, fs: &simFS{}}
}

func fakeV1(t *testing.T) *Layout {
	root := t.TempDir()
	l := &Layout{Mode: Hybrid, Unified: filepath.Join(root, "unified"), V1: map[string]string{}, fs: &simFS{}}
	for _, c := range []string{"cpu,cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio"} {
		for name := range strings.SplitSeq(c, ",") {
			l.V1[name] = filepath.Join(root, c)
		}
		if err := os.MkdirAll(filepath.Join(root, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(l.Unified, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "cpuset", "cpuset.cpus"), "0-3\n")
	writeFile(t, filepath.Join(root, "cpuset", "cpuset.mems"), "0\n")
	return l
}

func ptr[T any](v T) *T { return &v }

func TestFakeV2NewEnablesControllers(t *testing.T) {
	l := fakeV2(t)
	m, err := l.New("kubepods/pod1/ctr1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path("memory") != filepath.Join(l.Unified, "kubepods/pod1/ctr1") || m.Path("") != m.Path("cpu") {
		t.Fatalf("paths: memory %q, cpu %q", m.Path("memory"), m.Path("cpu"))
	}
	want := "cpuset cpu io memory hugetlb pids rdma misc"
	for _, d := range []string{"", "kubepods", "kubepods/pod1"} {
		if got := readFile(t, filepath.Join(l.Unified, d, "cgroup.subtree_control")); got != want {
			t.Errorf("%s/cgroup.subtree_control = %q, want %q", d, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(l.Unified, "kubepods/pod1/ctr1/cgroup.subtree_control")); err == nil {
		t.Error("leaf got controllers enabled for children")
	}
	if _, err := l.Load("kubepods/pod1/ctr1"); err != nil {
		t.Errorf("Load existing: %v", err)
	}
	if _, err := l.Load("kubepods/nope"); !errdefs.IsNotFound(err) {
		t.Errorf("Load missing: err = %v", err)
	}
}

func TestFakeV2Set(t *testing.T) {
	l := fakeV2(t)
	m, err := l.New("/pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	r := &specs.LinuxResources{
		CPU: &specs.LinuxCPU{
			Shares: ptr(uint64(1024)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)),
			Cpus: "0-1", Mems: "0",
		},
		Memory: &specs.LinuxMemory{
			Limit: ptr(int64(32 << 20)), Swap: ptr(int64(48 << 20)), Reservation: ptr(int64(16 << 20)),
		},
		Pids:           &specs.LinuxPids{Limit: ptr(int64(64))},
		BlockIO:        &specs.LinuxBlockIO{Weight: ptr(uint16(500))},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "30000000"},
		Devices:        []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"cpu.weight":       "39",
		"cpu.max":          "50000 100000",
		"cpuset.cpus":      "0-1",
		"cpuset.mems":      "0",
		"memory.max":       "33554432",
		"memory.swap.max":  "16777216",
		"memory.low":       "16777216",
		"pids.max":         "64",
		"io.weight":        "default 4950",
		"hugetlb.2MB.max":  "4194304",
		"memory.high":      "30000000",
		"cgroup.procs":     "",
		"cpu.weight.nice":  "",
		"memory.oom.group": "",
	} {
		got, err := os.ReadFile(filepath.Join(m.Path(""), file))
		if want == "" {
			if err == nil {
				t.Errorf("%s written (%q) though nothing asked for it", file, got)
			}
			continue
		}
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		}
	}

	want, err := DeviceProgram(r.Devices)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.fs.(*simFS).devices[m.Path("")]; string(got) != string(want) {
		t.Errorf("device program attached to %s: %d bytes, want the %d of DeviceProgram", m.Path(""), len(got), len(want))
	}

	// Unlimited memory lifts swap too; a nil pids limit is left alone.
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-1))}, Pids: &specs.LinuxPids{Limit: ptr(int64(0))}}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"memory.max": "max", "memory.swap.max": "max", "pids.max": "max"} {
		if got := readFile(t, filepath.Join(m.Path(""), file)); got != want {
			t.Errorf("after update %s = %q, want %q", file, got, want)
		}
	}

	for name, bad := range map[string]*specs.LinuxResources{
		"unified key with slash": {Unified: map[string]string{"../memory.max": "1"}},
		"swap below limit":       {Memory: &specs.LinuxMemory{Limit: ptr(int64(100)), Swap: ptr(int64(50))}},
	} {
		if err := m.Set(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
	}
}

func TestFakeV2StatsFreezePids(t *testing.T) {
	l := fakeV2(t)
	m, err := l.New("/pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	d := m.Path("")
	writeFile(t, filepath.Join(d, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n")
	writeFile(t, filepath.Join(d, "memory.current"), "10000\n")
	writeFile(t, filepath.Join(d, "memory.max"), "max\n")
	writeFile(t, filepath.Join(d, "memory.stat"), "anon 6000\nfile 4000\ninactive_file 3000\npgfault 11\npgmajfault 2\nfile_mapped 1500\n")
	writeFile(t, filepath.Join(d, "memory.events"), "low 0\nhigh 3\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n")
	writeFile(t, filepath.Join(d, "memory.peak"), "12000\n")
	writeFile(t, filepath.Join(d, "memory.low"), "0\n")
	writeFile(t, filepath.Join(d, "memory.swap.max"), "max\n")
	writeFile(t, filepath.Join(d, "cpu.max"), "20000 100000\n")
	writeFile(t, filepath.Join(d, "cpu.weight"), "1\n")
	writeFile(t, filepath.Join(d, "cpu.pressure"), "some avg10=2.00 avg60=1.00 avg300=0.50 total=300\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	writeFile(t, filepath.Join(d, "memory.pressure"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=40\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=20\n")
	writeFile(t, filepath.Join(d, "io.pressure"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n")
	writeFile(t, filepath.Join(d, "pids.current"), "3\n")
	writeFile(t, filepath.Join(d, "pids.max"), "max\n")
	writeFile(t, filepath.Join(d, "cgroup.procs"), "10\n12\n")
	writeFile(t, filepath.Join(d, "sub", "cgroup.procs"), "11\n10\n")
	writeFile(t, filepath.Join(d, "cgroup.events"), "populated 1\nfrozen 1\n")

	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		CPU: CPUStats{UsageNanos: 1500000, UserNanos: 1000000, SystemNanos: 500000, Periods: 4, ThrottledPeriods: 1, ThrottledNanos: 7000},
		Memory: MemoryStats{Usage: 10000, WorkingSet: 7000, RSS: 6000, Cache: 4000, InactiveFile: 3000, Limit: ^uint64(0), PageFaults: 11, MajorPageFaults: 2, OOMKills: 2,
			MaxUsage: 12000, Failcnt: 5, MappedFile: 1500, Events: &MemoryEvents{High: 3, Max: 5}},
		Pids:   PidsStats{Current: 3, Limit: ^uint64(0)},
		Limits: Limits{CPUShares: 2, CPUPeriod: 100000, CPUQuota: 20000, MemoryReservation: 0, SwapLimit: ^uint64(0)},
		PSI: &PSI{
			CPU:    Pressure{Some: PressureData{Avg10: 2, Avg60: 1, Avg300: 0.5, Total: 300}},
			Memory: Pressure{Some: PressureData{Total: 40}, Full: PressureData{Total: 20}},
			IO:     Pressure{Some: PressureData{Total: 5}, Full: PressureData{Total: 1}},
		},
	}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("stats = %+v\nwant %+v", *s, want)
	}
	if n, err := m.OOMKillCount(); err != nil || n != 2 {
		t.Errorf("OOMKillCount = %d, %v", n, err)
	}
	pids, err := m.Pids()
	if err != nil || len(pids) != 3 || pids[0] != 10 || pids[2] != 12 {
		t.Errorf("Pids = %v, %v; want [10 11 12]", pids, err)
	}
	if err := m.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(d, "cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze = %q", got)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(d, "cgroup.freeze")); got != "0" {
		t.Errorf("cgroup.freeze after thaw = %q", got)
	}
	if err := m.Apply(4242); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(d, "cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs = %q", got)
	}
	if err := m.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup dir still there: %v", err)
	}
}

func TestFakeV1NewAndSet(t *testing.T) {
	l := fakeV1(t)
	m, err := l.New("/kubepods/pod1/ctr1")
	if err != nil {
		t.Fatal(err)
	}
	for _, lvl := range []string{"kubepods", "kubepods/pod1", "kubepods/pod1/ctr1"} {
		dir := filepath.Join(filepath.Dir(l.V1["cpuset"]), "cpuset", lvl)
		if got := readFile(t, filepath.Join(dir, "cpuset.cpus")); got != "0-3" {
			t.Errorf("%s cpuset.cpus = %q, want copied 0-3", lvl, got)
		}
		if got := readFile(t, filepath.Join(dir, "cpuset.mems")); got != "0" {
			t.Errorf("%s cpuset.mems = %q, want copied 0", lvl, got)
		}
	}
	if m.Path("cpu") != m.Path("cpuacct") || m.Path("") != filepath.Join(l.Unified, "kubepods/pod1/ctr1") {
		t.Errorf("paths: cpu %q cpuacct %q unified %q", m.Path("cpu"), m.Path("cpuacct"), m.Path(""))
	}
	r := &specs.LinuxResources{
		CPU:     &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(20000)), Period: ptr(uint64(100000)), Cpus: "1"},
		Memory:  &specs.LinuxMemory{Limit: ptr(int64(32 << 20)), Swap: ptr(int64(32 << 20))},
		Pids:    &specs.LinuxPids{Limit: ptr(int64(20))},
		BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(300))},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rwm"},
		},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	for ctl, files := range map[string]map[string]string{
		"cpu":     {"cpu.shares": "512", "cpu.cfs_quota_us": "20000", "cpu.cfs_period_us": "100000"},
		"cpuset":  {"cpuset.cpus": "1"},
		"memory":  {"memory.limit_in_bytes": "33554432", "memory.memsw.limit_in_bytes": "33554432"},
		"pids":    {"pids.max": "20"},
		"blkio":   {"blkio.weight": "300"},
		"devices": {"devices.deny": "a *:* rwm", "devices.allow": "c 1:3 rwm"},
	} {
		for f, want := range files {
			if got := readFile(t, filepath.Join(m.Path(ctl), f)); got != want {
				t.Errorf("%s/%s = %q, want %q", ctl, f, got, want)
			}
		}
	}
	// No hugetlb v1 hierarchy: silently skipped, nothing written anywhere.
	if _, err := os.Stat(filepath.Join(m.Path(""), "hugetlb.2MB.max")); err == nil {
		t.Error("hugetlb written to the hybrid cgroup2 hierarchy")
	}
	if err := m.Set(&specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unified on v1: err = %v", err)
	}
	if err := m.Apply(77); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"cpu", "cpuset", "memory", "pids", "devices", "freezer", "blkio", ""} {
		if got := readFile(t, filepath.Join(m.Path(c), "cgroup.procs")); got != "77" {
			t.Errorf("%s cgroup.procs = %q", c, got)
		}
	}
	if err := m.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"cpu", "memory", ""} {
		if _, err := os.Stat(m.Path(c)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s dir still there", c)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{"a/b": "/a/b", "/a//b/": "/a/b", "/a/./b": "/a/b"} {
		if got, err := cleanPath(in); err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "/", "a/../../etc", ".."} {
		if _, err := cleanPath(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("cleanPath(%q): err = %v", bad, err)
		}
	}
}

func TestDeviceProgram(t *testing.T) {
	prog, err := DeviceProgram([]specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rwm"},
		{Allow: true, Type: "b", Major: ptr(int64(-1)), Access: "m"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 7 prologue + (3+... per rule) + 2 epilogue; every instruction is 8 bytes
	// and the program ends in "r0 = 1; exit".
	if len(prog)%8 != 0 || len(prog) < 8*9 {
		t.Fatalf("program of %d bytes", len(prog))
	}
	tail := prog[len(prog)-16:]
	if tail[0] != 0xb7 || tail[4] != 1 || tail[8] != 0x95 {
		t.Errorf("program does not end in the default allow: % x", tail)
	}
	for name, bad := range map[string]specs.LinuxDeviceCgroup{
		"type":   {Type: "x", Access: "r"},
		"access": {Type: "c", Access: "rx"},
	} {
		if _, err := DeviceProgram([]specs.LinuxDeviceCgroup{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestFakeJoinParts: a process joins a cgroup in parts, each without the
// kernel's migration lock where it can: cloned into the cgroup2 directory
// (the clone target), its thread moving itself into the v1 hierarchies
// through the tasks files, and ApplyV1 and ApplyUnified for the rest, each
// writing only its own hierarchies' cgroup.procs.
func TestFakeJoinParts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layout func(*testing.T) *Layout
	}{
		{"v2", fakeV2},
		{"hybrid", fakeV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.layout(t)
			m, err := l.New("kubepods/pod1/ctr1")
			if err != nil {
				t.Fatal(err)
			}
			f, err := m.OpenCloneTarget()
			if err != nil {
				t.Fatal(err)
			}
			if f == nil {
				t.Fatal("no clone target")
			}
			defer f.Close()
			if f.Name() != m.Path("") {
				t.Errorf("clone target %s, want the cgroup2 directory %s", f.Name(), m.Path(""))
			}
			tasks, err := m.OpenTaskFiles()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range tasks {
				names = append(names, f.Name())
				f.Close()
			}
			var want []string
			for _, d := range m.dirs() {
				if d != m.unified {
					want = append(want, filepath.Join(d, "tasks"))
				}
			}
			if !reflect.DeepEqual(names, want) {
				t.Errorf("task files %q, want %q", names, want)
			}

			procs := func(d string) string {
				b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
				return strings.TrimSpace(string(b))
			}
			if err := m.ApplyV1(77); err != nil {
				t.Fatal(err)
			}
			if got := procs(m.Path("")); got != "" {
				t.Errorf("ApplyV1 wrote the cgroup2 cgroup.procs (%q)", got)
			}
			for c, d := range m.v1 {
				if got := procs(d); got != "77" {
					t.Errorf("ApplyV1: %s cgroup.procs = %q, want 77", c, got)
				}
			}
			if err := m.ApplyUnified(78); err != nil {
				t.Fatal(err)
			}
			if got := procs(m.Path("")); got != "78" {
				t.Errorf("ApplyUnified: cgroup2 cgroup.procs = %q, want 78", got)
			}
			for c, d := range m.v1 {
				if got := procs(d); got != "77" {
					t.Errorf("ApplyUnified wrote %s cgroup.procs (%q)", c, got)
				}
			}
			for _, apply := range []func(int) error{m.ApplyV1, m.ApplyUnified} {
				if err := apply(0); !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("apply of pid 0 = %v, want InvalidArgument", err)
				}
			}
		})
	}
	t.Run("no cgroup2", func(t *testing.T) {
		l := fakeV1(t)
		l.Unified = ""
		m, err := l.New("pod2/ctr2")
		if err != nil {
			t.Fatal(err)
		}
		f, err := m.OpenCloneTarget()
		if f != nil || err != nil {
			t.Errorf("OpenCloneTarget() = %v, %v; want none without a cgroup2 hierarchy", f, err)
		}
	})
}
