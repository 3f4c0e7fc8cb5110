package cgroups

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

const hybridMountinfo = `23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`

func TestParseMountInfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Mount
		mode    Mode
		v1      map[string]string
		unified string
		wantErr error
	}{
		{
			name: "hybrid",
			in:   hybridMountinfo,
			want: []Mount{
				{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", Version: 1, Controllers: []string{"cpu", "cpuacct"}},
				{Mountpoint: "/sys/fs/cgroup/cpuset", Root: "/", Version: 1, Controllers: []string{"cpuset"}},
				{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Version: 1, Controllers: []string{"memory"}},
				{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", Version: 1, Controllers: []string{"name=systemd"}},
				{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", Version: 2},
			},
			mode: Hybrid,
			v1: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
				"cpuset": "/sys/fs/cgroup/cpuset", "memory": "/sys/fs/cgroup/memory",
			},
			unified: "/sys/fs/cgroup/unified",
		},
		{
			name:    "unified",
			in:      "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			want:    []Mount{{Mountpoint: "/sys/fs/cgroup", Root: "/", Version: 2}},
			mode:    Unified,
			v1:      map[string]string{},
			unified: "/sys/fs/cgroup",
		},
		{
			name: "legacy with escaped mount point and bind mount of a subtree",
			in: "35 31 0:32 /docker/abc /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n" +
				"36 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
			want: []Mount{
				{Mountpoint: "/sys/fs/cgroup/mem ory", Root: "/docker/abc", Version: 1, Controllers: []string{"memory"}},
				{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Version: 1, Controllers: []string{"memory"}},
			},
			mode: Legacy,
			v1:   map[string]string{"memory": "/sys/fs/cgroup/memory"},
		},
		{
			name:    "no cgroups",
			in:      "23 1 0:21 / /sys rw - sysfs sysfs rw\n",
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name:    "garbage",
			in:      "not a mountinfo line\n",
			wantErr: errdefs.ErrInvalidArgument,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mounts, err := ParseMountInfo(strings.NewReader(tc.in))
			var l *Layout
			if err == nil {
				if !reflect.DeepEqual(mounts, tc.want) && tc.want != nil {
					t.Fatalf("mounts = %+v, want %+v", mounts, tc.want)
				}
				l, err = LayoutFromMounts(mounts)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Mode != tc.mode || l.Unified != tc.unified || !reflect.DeepEqual(l.V1, tc.v1) {
				t.Fatalf("layout = %+v, want mode %v unified %q v1 %v", l, tc.mode, tc.unified, tc.v1)
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	in := "9:name=systemd:/\n4:memory:/process_api/8c90\n2:cpu,cpuacct:/kubepods\n0::/user.slice\n"
	got, err := ParseProcCgroup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"name=systemd": "/", "memory": "/process_api/8c90", "cpu": "/kubepods", "cpuacct": "/kubepods", "": "/user.slice",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := ParseProcCgroup(strings.NewReader("bogus\n")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bogus line: err = %v", err)
	}
}

func TestParsePressure(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Pressure
		wantErr bool
	}{
		{"some and full", "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=99\n",
			Pressure{Some: PressureData{Avg10: 1.5, Avg60: 0.25, Total: 12345}, Full: PressureData{Avg10: 0.1, Total: 99}}, false},
		{"cpu of an old kernel: some only", "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", Pressure{Some: PressureData{Total: 7}}, false},
		{"empty", "", Pressure{}, false},
		{"unknown kind", "most avg10=0.00\n", Pressure{}, true},
		{"not key=value", "some avg10\n", Pressure{}, true},
		{"bad number", "some total=x\n", Pressure{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePressure(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseFlatKeyed(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]uint64
		wantErr bool
	}{
		{"oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", map[string]uint64{"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}, false},
		{"events with max", "low 0\nhigh 0\nmax max\n", map[string]uint64{"low": 0, "high": 0, "max": math.MaxUint64}, false},
		{"empty", "", map[string]uint64{}, false},
		{"no value", "key\n", nil, true},
		{"bad value", "key x\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFlatKeyed(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseUint(t *testing.T) {
	for in, want := range map[string]uint64{
		"42\n": 42, "max": math.MaxUint64, "-1": math.MaxUint64, "9223372036854771712": 9223372036854771712,
	} {
		got, err := ParseUint(in)
		if err != nil || got != want {
			t.Errorf("ParseUint(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseUint("12k"); err == nil {
		t.Error("ParseUint(12k) succeeded")
	}
}

func TestConversions(t *testing.T) {
	for _, tc := range []struct{ shares, weight uint64 }{
		{0, 0}, {2, 1}, {1, 1}, {1024, 39}, {262144, 10000}, {1 << 30, 10000},
	} {
		if got := SharesToWeight(tc.shares); got != tc.weight {
			t.Errorf("SharesToWeight(%d) = %d, want %d", tc.shares, got, tc.weight)
		}
	}
	for _, tc := range []struct{ in, want uint64 }{{0, 0}, {10, 1}, {500, 4950}, {1000, 10000}} {
		if got := BlkioWeightToIOWeight(tc.in); got != tc.want {
			t.Errorf("BlkioWeightToIOWeight(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		quota  *int64
		period *uint64
		want   string
	}{
		{nil, nil, ""},
		{i64(50000), u64(100000), "50000 100000"},
		{i64(-1), nil, "max 100000"},
		{nil, u64(20000), "max 20000"},
		{i64(30000), nil, "30000 100000"},
		{i64(0), nil, ""},
		{i64(0), u64(50000), "max 50000"},
	} {
		if got := CPUMax(tc.quota, tc.period); got != tc.want {
			t.Errorf("CPUMax(%v, %v) = %q, want %q", tc.quota, tc.period, got, tc.want)
		}
	}
	for _, tc := range []struct {
		limit, swap *int64
		want        string
		wantErr     bool
	}{
		{nil, nil, "", false},
		{i64(-1), nil, "max", false},
		{i64(100), i64(-1), "max", false},
		{i64(100), i64(0), "", false},
		{i64(100), i64(100), "0", false},
		{i64(100), i64(300), "200", false},
		{i64(100), i64(50), "", true},
		{nil, i64(50), "", true},
	} {
		got, err := SwapV2(tc.limit, tc.swap)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("SwapV2(%v, %v) = %q, %v; want %q (err %v)", tc.limit, tc.swap, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSystemdPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{"/kubepods/pod1/ctr", "/kubepods/pod1/ctr", false},
		{"kubepods-besteffort-pod12.slice:cri-containerd:abc", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope", false},
		{"system.slice:docker:xyz", "/system.slice/docker-xyz.scope", false},
		{"-.slice::x.scope", "/x.scope", false},
		{":skiff:c1", "/skiff-c1.scope", false},
		{"bad-.slice:p:n", "", true},
		{"notaslice:p:n", "", true},
		{"a.slice:p:", "", true},
	} {
		got, err := SystemdPath(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("SystemdPath(%q) = %q, %v; want %q (err %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
