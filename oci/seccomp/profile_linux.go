package seccomp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// maxProfileSize bounds a Localhost profile file; real ones are ~15 KiB.
const maxProfileSize = 4 << 20

// profile is the union of the OCI LinuxSeccomp JSON and the Docker
// profile format (archMap, name, includes/excludes, comment).
type profile struct {
	DefaultAction    specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet  *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures    []specs.Arch             `json:"architectures,omitempty"`
	ArchMap          []archMap                `json:"archMap,omitempty"`
	Flags            []specs.LinuxSeccompFlag `json:"flags,omitempty"`
	ListenerPath     string                   `json:"listenerPath,omitempty"`
	ListenerMetadata string                   `json:"listenerMetadata,omitempty"`
	Syscalls         []syscallEntry           `json:"syscalls,omitempty"`
}

type archMap struct {
	Arch      specs.Arch   `json:"architecture"`
	SubArches []specs.Arch `json:"subArchitectures"`
}

type syscallEntry struct {
	Name     string                   `json:"name,omitempty"`
	Names    []string                 `json:"names,omitempty"`
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet,omitempty"`
	Args     []specs.LinuxSeccompArg  `json:"args,omitempty"`
	Includes *filter                  `json:"includes,omitempty"`
	Excludes *filter                  `json:"excludes,omitempty"`
}

type filter struct {
	Arches    []string `json:"arches,omitempty"`
	Caps      []string `json:"caps,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// LoadProfile reads a Localhost profile (OCI or Docker JSON) for a
// container with DefaultCapabilities. See ParseProfile.
func LoadProfile(path string) (*specs.LinuxSeccomp, error) {
	return LoadProfileFor(path, DefaultCapabilities)
}

// LoadProfileFor reads a Localhost profile for a container whose bounding
// set is caps.
func LoadProfileFor(path string, caps []string) (*specs.LinuxSeccomp, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errdefs.NotFound("seccomp profile %q", path)
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile %q: %w", path, err)
	}
	if len(data) > maxProfileSize {
		return nil, errdefs.InvalidArgument("seccomp profile %q larger than %d bytes", path, maxProfileSize)
	}
	s, err := ParseProfile(data, caps)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %q: %w", path, err)
	}
	return s, nil
}

// ParseProfile converts profile JSON into the OCI form for this host:
// archMap entries pick the native architecture and its sub-architectures,
// includes/excludes are resolved against GOARCH, caps and the running
// kernel's version, and "name" is folded into "names". The result is
// compiled once so a broken profile fails here, not at container start.
func ParseProfile(data []byte, caps []string) (*specs.LinuxSeccomp, error) {
	var p profile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, errdefs.InvalidArgument("decode seccomp profile: %v", err)
	}
	if p.DefaultAction == "" {
		return nil, errdefs.InvalidArgument("seccomp profile has no defaultAction")
	}
	if len(p.Architectures) > 0 && len(p.ArchMap) > 0 {
		return nil, errdefs.InvalidArgument("seccomp profile sets both architectures and archMap")
	}
	has := map[string]bool{}
	for _, c := range caps {
		has[normCap(c)] = true
	}
	kernel := kernelVersion()

	s := &specs.LinuxSeccomp{
		DefaultAction:    p.DefaultAction,
		DefaultErrnoRet:  p.DefaultErrnoRet,
		Architectures:    p.Architectures,
		Flags:            p.Flags,
		ListenerPath:     p.ListenerPath,
		ListenerMetadata: p.ListenerMetadata,
	}
	native := nativeArches()
	for _, m := range p.ArchMap {
		if len(native) > 0 && m.Arch == native[0] {
			s.Architectures = append(s.Architectures, m.Arch)
			s.Architectures = append(s.Architectures, m.SubArches...)
		}
	}
	for i, e := range p.Syscalls {
		names := e.Names
		if e.Name != "" {
			names = append(slices.Clone(names), e.Name)
		}
		if len(names) == 0 {
			return nil, errdefs.InvalidArgument("seccomp profile syscalls[%d] names no syscall", i)
		}
		if e.Action == "" {
			return nil, errdefs.InvalidArgument("seccomp profile syscalls[%d] has no action", i)
		}
		if inc := e.Includes; inc != nil {
			if len(inc.Arches) > 0 && !slices.Contains(inc.Arches, runtime.GOARCH) {
				continue
			}
			// Every listed capability is required, as in Docker.
			if slices.ContainsFunc(inc.Caps, func(c string) bool { return !has[normCap(c)] }) {
				continue
			}
			if inc.MinKernel != "" {
				ok, err := kernelAtLeast(kernel, inc.MinKernel)
				if err != nil {
					return nil, errdefs.InvalidArgument("seccomp profile syscalls[%d]: %v", i, err)
				}
				if !ok {
					continue
				}
			}
		}
		if exc := e.Excludes; exc != nil {
			if slices.Contains(exc.Arches, runtime.GOARCH) {
				continue
			}
			if slices.ContainsFunc(exc.Caps, func(c string) bool { return has[normCap(c)] }) {
				continue
			}
			if exc.MinKernel != "" {
				ok, err := kernelAtLeast(kernel, exc.MinKernel)
				if err != nil {
					return nil, errdefs.InvalidArgument("seccomp profile syscalls[%d]: %v", i, err)
				}
				if ok {
					continue
				}
			}
		}
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: names, Action: e.Action, ErrnoRet: e.ErrnoRet, Args: e.Args})
	}
	if _, err := Compile(s); err != nil {
		return nil, err
	}
	if _, err := filterFlags(s.Flags); err != nil {
		return nil, err
	}
	return s, nil
}

// kernelVersion returns the running kernel's release ("6.1.0-13-amd64").
func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast compares the major.minor of release with want ("4.8").
func kernelAtLeast(release, want string) (bool, error) {
	wmaj, wmin, err := majorMinor(want)
	if err != nil {
		return false, fmt.Errorf("minKernel %q: %w", want, err)
	}
	rmaj, rmin, err := majorMinor(release)
	if err != nil {
		// An unreadable release: assume a current kernel rather than
		// silently dropping rules.
		return true, nil
	}
	return rmaj > wmaj || rmaj == wmaj && rmin >= wmin, nil
}

func majorMinor(v string) (int, int, error) {
	maj, rest, _ := strings.Cut(v, ".")
	minS, _, _ := strings.Cut(rest, ".")
	if i := strings.IndexFunc(minS, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minS = minS[:i]
	}
	a, err := strconv.Atoi(maj)
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.Atoi(minS)
	if err != nil {
		return 0, 0, err
	}
	return a, b, nil
}
