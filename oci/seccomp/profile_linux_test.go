package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

var update = flag.Bool("update", false, "rewrite golden files")

// dockerProfile exercises the Docker-only fields.
const dockerProfile = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"defaultErrnoRet": 1,
	"archMap": [
		{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
		{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
	],
	"syscalls": [
		{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
		{"name": "getpid", "action": "SCMP_ACT_ALLOW"},
		{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
		{"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_BOOT"]}},
		{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
		 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
		{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
		{"names": ["kexec_load"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
		{"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
		{"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
		{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
	]
}`

func TestParseDockerProfile(t *testing.T) {
	needAmd64(t)
	for _, tc := range []struct {
		name  string
		caps  []string
		want  []string // names of the entries kept, in order
		archs []specs.Arch
	}{
		{"default caps", DefaultCapabilities, []string{"read", "getpid", "clone", "ptrace", "arch_prctl", "mkdirat"}, nil},
		{"sys_admin", []string{"SYS_ADMIN"}, []string{"read", "getpid", "mount", "ptrace", "arch_prctl", "mkdirat"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseProfile([]byte(dockerProfile), tc.caps)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, sc := range s.Syscalls {
				got = append(got, sc.Names[0])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("kept %v, want %v", got, tc.want)
			}
			if want := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}; !slices.Equal(s.Architectures, want) {
				t.Errorf("architectures %v, want %v", s.Architectures, want)
			}
			v := newVM(t, mustCompile(t, s))
			if got := v.run(t, auditX64, unix.SYS_MKDIRAT); got != unix.SECCOMP_RET_ERRNO|13 {
				t.Errorf("mkdirat: %#x", got)
			}
			if got := v.run(t, auditX64, unix.SYS_GETPID); got != retAllow {
				t.Errorf("getpid (from \"name\"): %#x", got)
			}
		})
	}
}

func TestParseOCIProfile(t *testing.T) {
	in := RuntimeDefault()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseProfile(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Compile(in)
	b, _ := Compile(out)
	if !slices.Equal(a, b) {
		t.Error("OCI JSON round trip changed the compiled program")
	}

	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadProfile(path); err != nil {
		t.Errorf("LoadProfile: %v", err)
	}
	if _, err := LoadProfile(filepath.Join(t.TempDir(), "missing.json")); !errdefs.IsNotFound(err) {
		t.Errorf("missing profile: err = %v", err)
	}
}

func TestParseProfileErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":          `{`,
		"no default":        `{"syscalls": []}`,
		"both arch fields":  `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}`,
		"no names":          `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}`,
		"no action":         `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}`,
		"bad action":        `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "DENY"}]}`,
		"bad flag":          `{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}`,
		"bad minKernel":     `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "x"}}]}`,
		"bad default errno": `{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}`,
	} {
		if _, err := ParseProfile([]byte(in), nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release, want string
		ok            bool
	}{
		{"6.18.44-fc-v657", "4.8", true},
		{"4.8.0", "4.8", true},
		{"4.7.10-generic", "4.8", false},
		{"5.10", "5.10", true},
		{"3.10.0-1160.el7.x86_64", "4.8", false},
		{"4.19+", "4.8", true},
	} {
		ok, err := kernelAtLeast(tc.release, tc.want)
		if err != nil || ok != tc.ok {
			t.Errorf("kernelAtLeast(%q, %q) = %v, %v", tc.release, tc.want, ok, err)
		}
	}
}

// TestRuntimeDefaultGolden pins the RuntimeDefault profile: a change to
// the security table must show up in review as a change to testdata.
// Regenerate with go test -run Golden -update.
func TestRuntimeDefaultGolden(t *testing.T) {
	got, err := json.MarshalIndent(RuntimeDefault(), "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "runtime_default_"+runtime.GOARCH+".json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no golden file for %s: %v", runtime.GOARCH, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("RuntimeDefault differs from %s; run go test -run Golden -update and review the diff", path)
	}
	// Every name must be a syscall of at least one ABI the filter covers,
	// so that a typo cannot silently drop a rule.
	native, compat := hostArches()
	for _, sc := range RuntimeDefaultFor(append([]string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_SYS_NICE", "CAP_SYS_MODULE", "CAP_SYS_BOOT", "CAP_SYS_PACCT", "CAP_SYS_RAWIO", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG", "CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"}, DefaultCapabilities...)).Syscalls {
		for _, n := range sc.Names {
			known := false
			for _, a := range append([]*archInfo{native}, compat...) {
				if _, ok := a.names[n]; ok {
					known = true
				}
			}
			if known == isOtherArchOnly(n) {
				t.Errorf("%q: known on %s = %v, exception list disagrees", n, runtime.GOARCH, known)
			}
		}
	}
}

// isOtherArchOnly lists allowlist names that no ABI of this build has
// (they exist on other architectures).
func isOtherArchOnly(n string) bool {
	return n == "recv" || n == "send" // multiplexed through socketcall on x86
}

// FuzzParseProfile feeds arbitrary JSON to the profile parser; whatever it
// accepts must compile and install-check without panicking.
func FuzzParseProfile(f *testing.F) {
	f.Add([]byte(dockerProfile))
	def, _ := json.Marshal(RuntimeDefault())
	f.Add(def)
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":5,"value":1,"op":"SCMP_CMP_LE"}]}]}`))
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_KILL","architectures":["SCMP_ARCH_X32"],"flags":["SECCOMP_FILTER_FLAG_LOG"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseProfile(data, DefaultCapabilities)
		if err != nil {
			return
		}
		if _, err := Prepare(s); err != nil {
			t.Fatalf("accepted profile does not prepare: %v", err)
		}
	})
}
