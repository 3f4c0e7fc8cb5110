// Package cgroups places container processes into Linux control groups and
// applies OCI resource limits to them, on cgroup v1 (legacy), v2 (unified)
// and the hybrid layout where both are mounted.
//
// It writes cgroupfs files directly (the "cgroupfs" driver) instead of using
// github.com/opencontainers/cgroups: that module drags in systemd D-Bus and
// cilium/ebpf for code paths Skiff never takes, and the shim that links this
// package has a memory budget. The parsing helpers in this file are pure so
// they can be tested without root.
//
// On cgroup v2 there are no device files; device rules are compiled into an
// eBPF cgroup-device program (devices_linux.go). Skiff's cgroups are always
// leaves or have no processes of their own, as v2's "no internal
// processes" rule requires for enabling controllers below them.
package cgroups

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/skiffcri/skiff/errdefs"
)

// Mode is the cgroup layout of the host.
type Mode int

const (
	// Legacy: only cgroup v1 hierarchies are mounted.
	Legacy Mode = iota
	// Hybrid: v1 hierarchies carry the controllers and a cgroup2 hierarchy is
	// mounted beside them (usually with few or no controllers).
	Hybrid
	// Unified: a single cgroup2 hierarchy carries every controller.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case Hybrid:
		return "hybrid"
	case Unified:
		return "unified"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Mount is one cgroup filesystem mount read from /proc/self/mountinfo.
type Mount struct {
	Mountpoint string
	// Root is the path of the mount's root inside the hierarchy ("/" unless
	// the hierarchy was bind-mounted from a subtree).
	Root    string
	Version int // 1 or 2
	// Controllers lists the v1 controllers of the hierarchy from the super
	// block options, including named hierarchies such as "name=systemd".
	Controllers []string
}

// v1Controllers are the super block options of a cgroup v1 mount that name
// controllers (everything else is a mount option).
var v1Controllers = map[string]bool{
	"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "devices": true,
	"freezer": true, "net_cls": true, "net_prio": true, "blkio": true, "perf_event": true,
	"hugetlb": true, "pids": true, "rdma": true, "misc": true,
}

// ParseMountInfo returns the cgroup and cgroup2 mounts in a mountinfo file
// (proc(5) format).
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		// Optional fields end at a lone "-"; fstype, source and super
		// options follow it.
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, errdefs.InvalidArgument("mountinfo line %q: no separator", line)
		}
		fields := strings.Fields(pre)
		tail := strings.Fields(post)
		if len(fields) < 6 || len(tail) < 3 {
			return nil, errdefs.InvalidArgument("mountinfo line %q: too few fields", line)
		}
		m := Mount{Root: unescapeOctal(fields[3]), Mountpoint: unescapeOctal(fields[4])}
		switch tail[0] {
		case "cgroup2":
			m.Version = 2
		case "cgroup":
			m.Version = 1
			for opt := range strings.SplitSeq(tail[2], ",") {
				if v1Controllers[opt] || strings.HasPrefix(opt, "name=") {
					m.Controllers = append(m.Controllers, opt)
				}
			}
		default:
			continue
		}
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return mounts, nil
}

// unescapeOctal undoes the \NNN escaping the kernel applies to spaces, tabs,
// newlines and backslashes in mountinfo paths.
func unescapeOctal(s string) string {
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

// Layout says where each hierarchy is mounted. It is detected from
// mountinfo on a real host; tests build one over a temporary directory.
type Layout struct {
	Mode Mode
	// Unified is the mount point of the cgroup2 hierarchy, "" if none.
	Unified string
	// V1 maps each v1 controller to the mount point of its hierarchy;
	// co-mounted controllers (cpu,cpuacct) share a mount point.
	V1 map[string]string

	// fs is the filesystem the hierarchies live on; nil is the kernel's
	// cgroupfs. Unit tests put a simulation here.
	fs cgroupFS
}

// LayoutFromMounts decides the host's mode from its cgroup mounts. Named v1
// hierarchies (name=systemd) carry no controllers and are ignored.
func LayoutFromMounts(mounts []Mount) (*Layout, error) {
	l := &Layout{V1: map[string]string{}}
	for _, m := range mounts {
		switch m.Version {
		case 2:
			// Prefer the mount of the hierarchy's root over bind mounts of
			// subtrees.
			if l.Unified == "" || m.Root == "/" {
				l.Unified = m.Mountpoint
			}
		case 1:
			for _, c := range m.Controllers {
				if strings.HasPrefix(c, "name=") {
					continue
				}
				if _, ok := l.V1[c]; !ok || m.Root == "/" {
					l.V1[c] = m.Mountpoint
				}
			}
		}
	}
	switch {
	case len(l.V1) > 0 && l.Unified != "":
		l.Mode = Hybrid
	case len(l.V1) > 0:
		l.Mode = Legacy
	case l.Unified != "":
		l.Mode = Unified
	default:
		return nil, errdefs.FailedPrecondition("no cgroup hierarchy is mounted")
	}
	return l, nil
}

// ParseProcCgroup parses /proc/<pid>/cgroup into controller -> path. The v2
// entry ("0::/path") is returned under the key "". Co-mounted v1 controllers
// ("cpu,cpuacct") get one key each; named hierarchies keep "name=...".
func ParseProcCgroup(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, errdefs.InvalidArgument("cgroup line %q: want id:controllers:path", line)
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read cgroup file: %w", err)
	}
	return out, nil
}

// ParseFlatKeyed parses files of "key value" lines (memory.stat, cpu.stat,
// memory.events, memory.oom_control). A value "max" becomes math.MaxUint64.
func ParseFlatKeyed(data string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for line := range strings.SplitSeq(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			return nil, errdefs.InvalidArgument("flat-keyed line %q: want key value", line)
		}
		n, err := ParseUint(v)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		out[k] = n
	}
	return out, nil
}

// Pressure is one resource's pressure stall information: the share of
// time some or all (full) tasks stalled on it.
type Pressure struct {
	Some, Full PressureData
}

// PressureData is one line of a pressure file: the stall percentage
// averaged over 10, 60 and 300 seconds, and the total stall time in
// microseconds.
type PressureData struct {
	Avg10, Avg60, Avg300 float64
	Total                uint64
}

// ParsePressure parses a PSI file (cpu.pressure, memory.pressure,
// io.pressure): "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and the
// same for "full", which older kernels leave out of cpu.pressure.
func ParsePressure(data string) (Pressure, error) {
	var p Pressure
	for line := range strings.SplitSeq(data, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var d *PressureData
		switch fields[0] {
		case "some":
			d = &p.Some
		case "full":
			d = &p.Full
		default:
			return Pressure{}, errdefs.InvalidArgument("pressure line %q: want some or full", line)
		}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return Pressure{}, errdefs.InvalidArgument("pressure line %q: field %q is not key=value", line, kv)
			}
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				d.Total, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return Pressure{}, errdefs.InvalidArgument("pressure line %q: %s: %v", line, k, err)
			}
		}
	}
	return p, nil
}

// ParseUint parses a single-value cgroup file. "max" (v2 unlimited) maps to
// math.MaxUint64; negative values (v1 "-1" for unlimited) map to
// math.MaxUint64 as well.
func ParseUint(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return math.MaxUint64, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err == nil {
		return n, nil
	}
	if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
		return math.MaxUint64, nil
	}
	return 0, errdefs.InvalidArgument("cgroup value %q: %v", s, err)
}

// SharesToWeight converts v1 cpu.shares [2, 262144] to v2 cpu.weight
// [1, 10000] linearly, the conversion the OCI runtimes agree on. Zero means
// unset and returns zero.
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// WeightToShares is SharesToWeight backwards, for reporting a v2 cgroup's
// cpu.weight as cpu.shares; zero returns zero.
func WeightToShares(weight uint64) uint64 {
	if weight == 0 {
		return 0
	}
	weight = min(max(weight, 1), 10000)
	return 2 + ((weight-1)*262142)/9999
}

// BlkioWeightToIOWeight converts v1 blkio.weight [10, 1000] to v2 io.weight
// [1, 10000]. Zero means unset and returns zero.
func BlkioWeightToIOWeight(w uint64) uint64 {
	if w == 0 {
		return 0
	}
	w = min(max(w, 10), 1000)
	return 1 + (w-10)*9999/990
}

// CPUMax formats v2 cpu.max from an OCI quota and period. A negative quota
// means no limit; zero or nil leaves the quota alone. It returns "" when neither is set.
func CPUMax(quota *int64, period *uint64) string {
	if quota != nil && *quota == 0 {
		quota = nil // zero means unset, as in runc
	}
	if quota == nil && (period == nil || *period == 0) {
		return ""
	}
	q := "max"
	if quota != nil && *quota > 0 {
		q = strconv.FormatInt(*quota, 10)
	}
	p := uint64(100000)
	if period != nil && *period != 0 {
		p = *period
	}
	return q + " " + strconv.FormatUint(p, 10)
}

// SwapV2 converts the OCI swap value, which is a memory+swap total as in
// cgroup v1, to v2 memory.swap.max, which counts swap alone. It returns ""
// when swap is not to be written.
func SwapV2(limit, swap *int64) (string, error) {
	if swap == nil {
		// Unlimited memory with unset swap means unlimited swap too, so
		// a container updated to "no limit" is not capped by a stale swap.
		if limit != nil && *limit == -1 {
			return "max", nil
		}
		return "", nil
	}
	switch {
	case *swap == -1:
		return "max", nil
	case *swap == 0:
		return "", nil
	case limit == nil || *limit <= 0:
		return "", errdefs.InvalidArgument("memory swap %d given without a memory limit", *swap)
	case *swap < *limit:
		return "", errdefs.InvalidArgument("memory+swap limit %d is below memory limit %d", *swap, *limit)
	}
	return strconv.FormatInt(*swap-*limit, 10), nil
}

// limitString formats a limit for a v2 file: negative means "max".
func limitString(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// SystemdPath converts a systemd-driver cgroups path ("slice:prefix:name",
// what kubelet sends with cgroupDriver=systemd) into the directory systemd
// would use, so the cgroupfs driver can honour it on hosts without
// systemd: "kubepods-besteffort.slice:cri:abc" becomes
// "/kubepods.slice/kubepods-besteffort.slice/cri-abc.scope". Paths without
// two colons are returned unchanged.
func SystemdPath(p string) (string, error) {
	parts := strings.Split(p, ":")
	if len(parts) != 3 || strings.Contains(p, "/") {
		return p, nil
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if name == "" {
		return "", errdefs.InvalidArgument("systemd cgroups path %q: empty unit name", p)
	}
	dir, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") && !strings.HasSuffix(name, ".scope") {
		if prefix != "" {
			unit = prefix + "-" + name
		}
		unit += ".scope"
	}
	return strings.TrimSuffix(dir, "/") + "/" + unit, nil
}

// expandSlice turns "a-b-c.slice" into "/a.slice/a-b.slice/a-b-c.slice";
// "" and "-.slice" are the root slice.
func expandSlice(slice string) (string, error) {
	if slice == "" || slice == "-.slice" {
		return "/", nil
	}
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", errdefs.InvalidArgument("invalid systemd slice %q", slice)
	}
	var b strings.Builder
	prefix := ""
	for comp := range strings.SplitSeq(name, "-") {
		prefix += comp
		b.WriteString("/" + prefix + ".slice")
		prefix += "-"
	}
	return b.String(), nil
}
