package seccomp

import (
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// vm runs a compiled filter in x/net/bpf's userspace interpreter.
type vm struct{ m *bpf.VM }

func newVM(t *testing.T, prog []unix.SockFilter) vm {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, f := range prog {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program has instructions x/net/bpf cannot decode")
	}
	m, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	return vm{m}
}

// run evaluates one syscall. The interpreter loads 32-bit words in network
// byte order while the kernel uses host order; every load in a seccomp
// filter is an aligned 32-bit word, so storing each word big-endian gives
// the interpreter exactly the values the kernel would see.
func (v vm) run(t *testing.T, audit uint32, nr uint32, args ...uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], audit)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[20+8*i:], uint32(a>>32))
	}
	r, err := v.m.Run(data[:])
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return uint32(r)
}

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retNOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
	auditX64 = unix.AUDIT_ARCH_X86_64
	auditI32 = unix.AUDIT_ARCH_I386
	auditARM = unix.AUDIT_ARCH_AARCH64
)

func needAmd64(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("syscall numbers in this test are amd64's")
	}
}

func TestRuntimeDefaultDecisions(t *testing.T) {
	needAmd64(t)
	prog, err := Compile(RuntimeDefault())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RuntimeDefault: %d instructions", len(prog))
	v := newVM(t, prog)
	const (
		x32     = 0x40000000
		i386Dup = 41 // dup on i386
		i386Mnt = 21 // mount on i386
	)
	tests := []struct {
		name  string
		audit uint32
		nr    uint32
		args  []uint64
		want  uint32
	}{
		{"read allowed", auditX64, unix.SYS_READ, nil, retAllow},
		{"execve allowed", auditX64, unix.SYS_EXECVE, nil, retAllow},
		{"chroot allowed with default caps", auditX64, unix.SYS_CHROOT, nil, retAllow},
		{"arch_prctl allowed on amd64", auditX64, unix.SYS_ARCH_PRCTL, nil, retAllow},
		{"mount denied", auditX64, unix.SYS_MOUNT, nil, retEPERM},
		{"unshare denied", auditX64, unix.SYS_UNSHARE, nil, retEPERM},
		{"kexec_load denied", auditX64, unix.SYS_KEXEC_LOAD, nil, retEPERM},
		{"reboot denied", auditX64, unix.SYS_REBOOT, nil, retEPERM},
		{"clone thread allowed", auditX64, unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND | unix.CLONE_FS | unix.CLONE_FILES}, retAllow},
		{"clone fork allowed", auditX64, unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, retAllow},
		{"clone newuser denied", auditX64, unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, retEPERM},
		{"clone newns denied", auditX64, unix.SYS_CLONE, []uint64{unix.CLONE_NEWNS}, retEPERM},
		{"clone newnet with high bits denied", auditX64, unix.SYS_CLONE, []uint64{1<<40 | unix.CLONE_NEWNET}, retEPERM},
		{"clone high bits only allowed", auditX64, unix.SYS_CLONE, []uint64{1 << 40}, retAllow},
		{"clone3 ENOSYS", auditX64, unix.SYS_CLONE3, nil, retNOSYS},
		{"personality query allowed", auditX64, unix.SYS_PERSONALITY, []uint64{0xffffffff}, retAllow},
		{"personality linux32 allowed", auditX64, unix.SYS_PERSONALITY, []uint64{8}, retAllow},
		{"personality addr_no_randomize denied", auditX64, unix.SYS_PERSONALITY, []uint64{0x0040000}, retEPERM},
		{"personality query with high word denied", auditX64, unix.SYS_PERSONALITY, []uint64{0x1_ffffffff}, retEPERM},
		{"socket inet allowed", auditX64, unix.SYS_SOCKET, []uint64{unix.AF_INET}, retAllow},
		{"socket vsock denied", auditX64, unix.SYS_SOCKET, []uint64{unix.AF_VSOCK}, retEPERM},
		{"syscall newer than the profile gets ENOSYS", auditX64, 600, nil, retNOSYS},
		{"x32 read allowed", auditX64, x32 | unix.SYS_READ, nil, retAllow},
		{"x32 mount denied", auditX64, x32 | unix.SYS_MOUNT, nil, retEPERM},
		{"x32 compat rt_sigaction allowed", auditX64, x32 | 512, nil, retAllow},
		{"x32 compat execve allowed", auditX64, x32 | 520, nil, retAllow},
		{"i386 dup allowed", auditI32, i386Dup, nil, retAllow},
		{"i386 mount denied", auditI32, i386Mnt, nil, retEPERM},
		{"foreign arch killed", auditARM, unix.SYS_READ, nil, retKill},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := v.run(t, tc.audit, tc.nr, tc.args...); got != tc.want {
				t.Errorf("got %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestCompileDeterministic(t *testing.T) {
	a := mustCompile(t, RuntimeDefault())
	for range 5 {
		if b := mustCompile(t, RuntimeDefault()); !slices.Equal(a, b) {
			t.Fatal("two compilations of the same profile differ")
		}
	}
}

func TestRuntimeDefaultForSysAdmin(t *testing.T) {
	needAmd64(t)
	v := newVM(t, mustCompile(t, RuntimeDefaultFor(append([]string{"SYS_ADMIN", "cap_sys_ptrace"}, DefaultCapabilities...))))
	for _, tc := range []struct {
		nr   uint32
		args []uint64
		want uint32
	}{
		{unix.SYS_MOUNT, nil, retAllow},
		{unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER}, retAllow},
		{unix.SYS_CLONE3, nil, retAllow},
		{unix.SYS_KCMP, nil, retAllow},
		{unix.SYS_REBOOT, nil, retEPERM},
	} {
		if got := v.run(t, auditX64, tc.nr, tc.args...); got != tc.want {
			t.Errorf("nr %d %v: got %#x, want %#x", tc.nr, tc.args, got, tc.want)
		}
	}
	// Without CAP_SYS_CHROOT chroot goes.
	v = newVM(t, mustCompile(t, RuntimeDefaultFor(nil)))
	if got := v.run(t, auditX64, unix.SYS_CHROOT); got != retEPERM {
		t.Errorf("chroot without CAP_SYS_CHROOT: %#x", got)
	}
}

func mustCompile(t *testing.T, s *specs.LinuxSeccomp) []unix.SockFilter {
	t.Helper()
	p, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func u(v uint) *uint { return &v }

func TestCompileOperators(t *testing.T) {
	needAmd64(t)
	arg := func(op specs.LinuxSeccompOperator, v, v2 uint64) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: u(99),
			Args: []specs.LinuxSeccompArg{{Index: 2, Op: op, Value: v, ValueTwo: v2}}}
	}
	const big = 0x1_0000_0005
	tests := []struct {
		op    specs.LinuxSeccompOperator
		v, v2 uint64
		hits  []uint64
		miss  []uint64
	}{
		{specs.OpEqualTo, big, 0, []uint64{big}, []uint64{5, big + 1, 0x2_0000_0005}},
		{specs.OpNotEqual, big, 0, []uint64{5, big + 1, 0}, []uint64{big}},
		{specs.OpGreaterThan, big, 0, []uint64{big + 1, 0x2_0000_0000}, []uint64{big, 5, 0x1_0000_0000}},
		{specs.OpGreaterEqual, big, 0, []uint64{big, big + 1, 0x2_0000_0000}, []uint64{big - 1, 0xffff_ffff}},
		{specs.OpLessThan, big, 0, []uint64{big - 1, 0xffff_ffff, 0}, []uint64{big, 0x2_0000_0000}},
		{specs.OpLessEqual, big, 0, []uint64{big, 0, 0x1_0000_0000}, []uint64{big + 1, 0x2_0000_0000}},
		{specs.OpMaskedEqual, 0xff00_0000_00f0, 0x1200_0000_0030, []uint64{0x1234_0000_0035, 0x1200_0000_0030}, []uint64{0x1200_0000_0040, 0x1300_0000_0030}},
	}
	for _, tc := range tests {
		t.Run(string(tc.op), func(t *testing.T) {
			s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{arg(tc.op, tc.v, tc.v2)}}
			v := newVM(t, mustCompile(t, s))
			hit := unix.SECCOMP_RET_ERRNO | uint32(99)
			for _, a := range tc.hits {
				if got := v.run(t, auditX64, unix.SYS_READ, 0, 0, a); got != hit {
					t.Errorf("arg %#x: got %#x, want match", a, got)
				}
			}
			for _, a := range tc.miss {
				if got := v.run(t, auditX64, unix.SYS_READ, 0, 0, a); got != retAllow {
					t.Errorf("arg %#x: got %#x, want no match", a, got)
				}
			}
		})
	}
}

func TestCompileRuleSemantics(t *testing.T) {
	needAmd64(t)
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			// Same index twice: either value (OR).
			{Names: []string{"kill"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 1, Op: specs.OpEqualTo, Value: 0}, {Index: 1, Op: specs.OpEqualTo, Value: 15},
			}},
			// Different indexes: both (AND).
			{Names: []string{"lseek"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpEqualTo, Value: 3}, {Index: 2, Op: specs.OpEqualTo, Value: 1},
			}},
			// Conditional rule first, unconditional fallback for the rest.
			{Names: []string{"write"}, Action: specs.ActErrno, ErrnoRet: u(5), Args: []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpEqualTo, Value: 2},
			}},
			{Names: []string{"write", "no_such_syscall"}, Action: specs.ActAllow},
			{Names: []string{"getpid"}, Action: specs.ActKillThread},
			{Names: []string{"gettid"}, Action: specs.ActLog},
			{Names: []string{"exit"}, Action: specs.ActTrap},
		},
	}
	v := newVM(t, mustCompile(t, s))
	for _, tc := range []struct {
		name string
		nr   uint32
		args []uint64
		want uint32
	}{
		{"kill sig 0", unix.SYS_KILL, []uint64{1, 0}, retAllow},
		{"kill sig 15", unix.SYS_KILL, []uint64{1, 15}, retAllow},
		{"kill sig 9", unix.SYS_KILL, []uint64{1, 9}, retEPERM},
		{"lseek both", unix.SYS_LSEEK, []uint64{3, 0, 1}, retAllow},
		{"lseek one", unix.SYS_LSEEK, []uint64{3, 0, 2}, retEPERM},
		{"write stderr", unix.SYS_WRITE, []uint64{2}, unix.SECCOMP_RET_ERRNO | 5},
		{"write stdout", unix.SYS_WRITE, []uint64{1}, retAllow},
		{"getpid kill thread", unix.SYS_GETPID, nil, unix.SECCOMP_RET_KILL_THREAD},
		{"gettid log", unix.SYS_GETTID, nil, unix.SECCOMP_RET_LOG},
		{"exit trap", unix.SYS_EXIT, nil, unix.SECCOMP_RET_TRAP},
		{"unlisted", unix.SYS_READ, nil, retEPERM},
		{"x32 not listed is killed", 0x40000000 | unix.SYS_WRITE, []uint64{1}, retKill},
		{"i386 not listed is killed", 4, nil, retKill},
	} {
		audit := uint32(auditX64)
		if tc.name == "i386 not listed is killed" {
			audit = auditI32
		}
		if got := v.run(t, audit, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		s    *specs.LinuxSeccomp
		kind error
	}{
		"nil":            {nil, errdefs.ErrInvalidArgument},
		"bad default":    {&specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"}, errdefs.ErrInvalidArgument},
		"notify":         {&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}, errdefs.ErrUnimplemented},
		"arg index":      {&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, errdefs.ErrInvalidArgument},
		"bad op":         {&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_WAT"}}}}}, errdefs.ErrInvalidArgument},
		"errno too big":  {&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: u(1 << 20)}, errdefs.ErrInvalidArgument},
		"rule errno big": {&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: u(1 << 17)}}}, errdefs.ErrInvalidArgument},
	} {
		if _, err := Compile(tc.s); !errors.Is(err, tc.kind) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.kind)
		}
	}
}

// TestCompileLargeProfile checks that long allowlists and many conditional
// rules stay within the jump ranges of classic BPF.
func TestCompileLargeProfile(t *testing.T) {
	needAmd64(t)
	native, _ := hostArches()
	var all []string
	for name := range native.names {
		all = append(all, name)
	}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: all, Action: specs.ActAllow}}}
	for i := range 60 {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActErrno, ErrnoRet: u(uint(i + 1)),
			Args: []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: uint64(1000 + i)}, {Index: 0, Op: specs.OpGreaterThan, Value: 2}}})
	}
	v := newVM(t, mustCompile(t, s))
	if got := v.run(t, auditX64, unix.SYS_IOCTL, 3, 1059); got != unix.SECCOMP_RET_ERRNO|60 {
		t.Errorf("last ioctl rule: %#x", got)
	}
	if got := v.run(t, auditX64, unix.SYS_IOCTL, 1, 1059); got != retAllow {
		t.Errorf("ioctl fallback: %#x", got)
	}
	for _, nr := range []uint32{unix.SYS_READ, unix.SYS_OPEN_TREE, unix.SYS_WRITE} {
		if got := v.run(t, auditX64, nr); got != retAllow {
			t.Errorf("nr %d: %#x", nr, got)
		}
	}
}
