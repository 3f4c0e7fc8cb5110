package seccomp

import (
	"cmp"
	"runtime"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// archInfo is one syscall ABI a filter can see. x32 shares the x86_64
// audit arch and is told apart by the x32 bit in the syscall number.
type archInfo struct {
	name  specs.Arch
	audit uint32
	mask  uint32 // OR-ed into every syscall number (x32)
	// names maps a syscall name to its numbers. Built from the number ->
	// name table because a name can have two numbers (x32 has compat
	// entries at 512+ beside the shared ones), which the library's own
	// name -> number map cannot hold.
	names map[string][]int
}

// syscallTable is one ABI's audit arch, number mask and syscalls, sorted
// by number: static data generated from go-seccomp-bpf's tables
// (zsyscalls_linux.go), so that no process pays for them until it
// compiles a filter.
type syscallTable struct {
	audit, mask uint32
	calls       []sysNumber
}

type sysNumber struct {
	nr   int
	name string
}

//go:generate sh -c "go run ./internal/gensyscalls > zsyscalls_linux.go"

func info(name specs.Arch, t *syscallTable) *archInfo {
	names := make(map[string][]int, len(t.calls))
	// calls are sorted by number, so each name's numbers are too.
	for _, c := range t.calls {
		names[c.name] = append(names[c.name], c.nr)
	}
	return &archInfo{name: name, audit: t.audit, mask: t.mask, names: names}
}

// x32Bit is __X32_SYSCALL_BIT.
const x32Bit = 0x40000000

// hostArches returns the native ABI of the build and the compat ABIs its
// kernel can also run. Filters only ever see these, so profile entries for
// any other architecture are ignored.
func hostArches() (native *archInfo, compat []*archInfo) { return hostArchTables() }

// hostArchTables builds the tables once; they are never written afterwards.
var hostArchTables = sync.OnceValues(func() (*archInfo, []*archInfo) {
	switch runtime.GOARCH {
	case "amd64":
		return info(specs.ArchX86_64, &tableX86_64), []*archInfo{info(specs.ArchX86, &tableI386), info(specs.ArchX32, &tableX32)}
	case "arm64":
		return info(specs.ArchAARCH64, &tableAARCH64), []*archInfo{info(specs.ArchARM, &tableARM)}
	case "386":
		return info(specs.ArchX86, &tableI386), nil
	case "arm":
		return info(specs.ArchARM, &tableARM), nil
	}
	return nil, nil
})

// nativeArches lists the arch names RuntimeDefault declares.
func nativeArches() []specs.Arch {
	n, c := hostArches()
	if n == nil {
		return nil
	}
	out := []specs.Arch{n.name}
	for _, a := range c {
		out = append(out, a.name)
	}
	return out
}

// actionValue encodes an OCI action as a SECCOMP_RET_* value.
func actionValue(a specs.LinuxSeccompAction, errnoRet *uint, defErrno uint) (uint32, error) {
	errno := defErrno
	if errnoRet != nil {
		errno = *errnoRet
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActErrno:
		if errno > unix.SECCOMP_RET_DATA {
			return 0, errdefs.InvalidArgument("seccomp errnoRet %d out of range", errno)
		}
		return unix.SECCOMP_RET_ERRNO | uint32(errno), nil
	case specs.ActTrace:
		if errno > unix.SECCOMP_RET_DATA {
			return 0, errdefs.InvalidArgument("seccomp trace data %d out of range", errno)
		}
		return unix.SECCOMP_RET_TRACE | uint32(errno), nil
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, errdefs.Unimplemented("seccomp action %s (user notification) is not supported", a)
	}
	return 0, errdefs.InvalidArgument("unknown seccomp action %q", a)
}

// denying reports whether a default action refuses syscalls, in which case
// syscalls newer than the profile get ENOSYS instead (see Compile).
func denying(v uint32) bool {
	switch v & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_LOG, unix.SECCOMP_RET_TRACE:
		return false
	}
	return true
}

type cond struct {
	idx   uint
	op    specs.LinuxSeccompOperator
	v, v2 uint64
}

type rule struct {
	conds  []cond
	action uint32
}

// sysRules are the rules for one syscall number: conditional rules in
// profile order, then the unconditional action if any.
type sysRules struct {
	conds  []rule
	uncond *uint32
}

// Compile translates an OCI seccomp configuration into a classic BPF
// program for the host's native ABI and the compat ABIs the configuration
// lists. Semantics, chosen to match runc with libseccomp where profiles
// rely on them:
//   - A syscall from an ABI not in the filter kills the process.
//   - For one syscall, conditional rules are tried in profile order and the
//     first match decides; otherwise its unconditional rule applies;
//     otherwise the default action.
//   - Conditions of one rule are ANDed, except that conditions repeating an
//     argument index are split into separate rules (ORed), as runc does.
//   - Syscall names the ABI does not have are skipped.
//   - With a denying default action, syscall numbers above the highest one
//     the profile names return ENOSYS, so programs fall back from syscalls
//     newer than the profile (clone3, openat2 ...) instead of failing hard.
func Compile(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	if s == nil {
		return nil, errdefs.InvalidArgument("no seccomp configuration")
	}
	def, err := actionValue(s.DefaultAction, s.DefaultErrnoRet, uint(unix.EPERM))
	if err != nil {
		return nil, err
	}
	native, compat := hostArches()
	if native == nil {
		return nil, errdefs.Unimplemented("seccomp on %s", runtime.GOARCH)
	}
	selected := []*archInfo{native}
	for _, name := range s.Architectures {
		if name == native.name {
			continue
		}
		for _, c := range compat {
			if c.name == name && !slices.Contains(selected, c) {
				selected = append(selected, c)
			}
		}
	}

	tables := make(map[*archInfo]map[int]*sysRules, len(selected))
	maxNr := make(map[*archInfo]int, len(selected))
	for _, a := range selected {
		tables[a] = map[int]*sysRules{}
		maxNr[a] = -1
	}
	for i, sc := range s.Syscalls {
		act, err := actionValue(sc.Action, sc.ErrnoRet, uint(unix.EPERM))
		if err != nil {
			return nil, errdefs.InvalidArgument("seccomp syscalls[%d]: %w", i, err)
		}
		rules, err := expandArgs(sc.Args, act)
		if err != nil {
			return nil, errdefs.InvalidArgument("seccomp syscalls[%d]: %w", i, err)
		}
		for _, name := range sc.Names {
			for _, a := range selected {
				for _, nr := range a.names[name] {
					maxNr[a] = max(maxNr[a], nr)
					sr := tables[a][nr]
					if sr == nil {
						sr = &sysRules{}
						tables[a][nr] = sr
					}
					if rules == nil {
						if sr.uncond == nil {
							v := act
							sr.uncond = &v
						}
						continue
					}
					sr.conds = append(sr.conds, rules...)
				}
			}
		}
	}

	var p asm
	// Dispatch on the ABI.
	p.ldAbs(offArch)
	sections := map[uint32]int{}
	var order []*archInfo
	for _, a := range selected {
		if _, ok := sections[a.audit]; ok {
			continue // x32 lives in the x86_64 section
		}
		l := p.label()
		sections[a.audit] = l
		order = append(order, a)
		p.jmp(unix.BPF_JEQ, a.audit, next, p.labelAt(1))
		p.ja(l)
	}
	p.ret(unix.SECCOMP_RET_KILL_PROCESS)

	var x32 *archInfo
	for _, a := range selected {
		if a.mask == x32Bit {
			x32 = a
		}
	}
	for _, a := range order {
		p.bind(sections[a.audit])
		p.ldAbs(offNr)
		if a.name != specs.ArchX86_64 {
			emitABI(&p, a, tables[a], maxNr[a], def)
			continue
		}
		// x32 calls carry the x86_64 audit arch and the x32 bit in the
		// number; keep them away from the x86_64 rules.
		if x32 == nil {
			p.jmp(unix.BPF_JGE, x32Bit, next, p.labelAt(1))
			p.ret(unix.SECCOMP_RET_KILL_PROCESS)
			emitABI(&p, a, tables[a], maxNr[a], def)
			continue
		}
		x32L := p.label()
		p.jmp(unix.BPF_JGE, x32Bit, next, p.labelAt(1))
		p.ja(x32L)
		emitABI(&p, a, tables[a], maxNr[a], def)
		p.bind(x32L)
		emitABI(&p, x32, tables[x32], maxNr[x32], def)
	}
	return p.assemble()
}

// emitABI emits the rules of one ABI. The accumulator holds the syscall
// number on entry; every path ends in a return.
func emitABI(p *asm, a *archInfo, tbl map[int]*sysRules, maxNr int, def uint32) {
	if denying(def) && maxNr >= 0 {
		p.jmp(unix.BPF_JGT, uint32(maxNr)|a.mask, next, p.labelAt(1))
		p.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	}
	type entry struct {
		nr  uint32
		act uint32
	}
	var plain []entry
	var condNrs []int
	for nr, sr := range tbl {
		if len(sr.conds) > 0 {
			condNrs = append(condNrs, nr)
			continue
		}
		if sr.uncond != nil && *sr.uncond != def {
			plain = append(plain, entry{uint32(nr) | a.mask, *sr.uncond})
		}
	}
	slices.SortFunc(plain, func(x, y entry) int {
		return cmp.Or(cmp.Compare(x.act, y.act), cmp.Compare(x.nr, y.nr))
	})
	// Syscalls with argument conditions first: one block each, skipped in
	// three instructions by every other syscall. The kernel caches the
	// verdict of syscalls whose result depends on nothing but the number,
	// so the long unconditional runs below cost little, while argument
	// checks (clone, socket) run on every call and should come early.
	slices.Sort(condNrs)
	for _, nr := range condNrs {
		sr := tbl[nr]
		end := p.label()
		p.ldAbs(offNr)
		p.jmp(unix.BPF_JEQ, uint32(nr)|a.mask, p.labelAt(1), next)
		p.ja(end)
		for _, r := range sr.conds {
			fail := p.label()
			for _, c := range r.conds {
				emitCond(p, c, fail)
			}
			p.ret(r.action)
			p.bind(fail)
		}
		fallback := def
		if sr.uncond != nil {
			fallback = *sr.uncond
		}
		p.ret(fallback)
		p.bind(end)
	}
	// Unconditional rules: short runs of compares that share one return.
	// The accumulator holds the syscall number again here.
	const run = 200
	for i := 0; i < len(plain); {
		j := i
		for j < len(plain) && j-i < run && plain[j].act == plain[i].act {
			j++
		}
		retL, skipL := p.label(), p.label()
		for k := i; k < j; k++ {
			if k == j-1 {
				p.jmp(unix.BPF_JEQ, plain[k].nr, retL, skipL)
			} else {
				p.jmp(unix.BPF_JEQ, plain[k].nr, retL, next)
			}
		}
		p.bind(retL)
		p.ret(plain[i].act)
		p.bind(skipL)
		i = j
	}
	p.ret(def)
}

// Offsets in struct seccomp_data (little-endian hosts).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argLo(i uint) uint32 { return offArgs + 8*uint32(i) }
func argHi(i uint) uint32 { return offArgs + 8*uint32(i) + 4 }

// emitCond emits a 64-bit comparison of argument c.idx that falls through
// when it holds and jumps to fail when it does not.
func emitCond(p *asm, c cond, fail int) {
	hi, lo := uint32(c.v>>32), uint32(c.v)
	ok := p.label()
	switch c.op {
	case specs.OpEqualTo:
		p.ldAbs(argHi(c.idx))
		p.jmp(unix.BPF_JEQ, hi, next, fail)
		p.ldAbs(argLo(c.idx))
		p.jmp(unix.BPF_JEQ, lo, next, fail)
	case specs.OpNotEqual:
		p.ldAbs(argHi(c.idx))
		p.jmp(unix.BPF_JEQ, hi, next, ok)
		p.ldAbs(argLo(c.idx))
		p.jmp(unix.BPF_JEQ, lo, fail, next)
	case specs.OpMaskedEqual:
		// (arg & v) == v2
		hi2, lo2 := uint32(c.v2>>32), uint32(c.v2)
		p.ldAbs(argHi(c.idx))
		p.andK(hi)
		p.jmp(unix.BPF_JEQ, hi2, next, fail)
		p.ldAbs(argLo(c.idx))
		p.andK(lo)
		p.jmp(unix.BPF_JEQ, lo2, next, fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		p.ldAbs(argHi(c.idx))
		p.jmp(unix.BPF_JGT, hi, ok, next)
		p.jmp(unix.BPF_JEQ, hi, next, fail)
		p.ldAbs(argLo(c.idx))
		if c.op == specs.OpGreaterThan {
			p.jmp(unix.BPF_JGT, lo, next, fail)
		} else {
			p.jmp(unix.BPF_JGE, lo, next, fail)
		}
	case specs.OpLessThan, specs.OpLessEqual:
		p.ldAbs(argHi(c.idx))
		p.jmp(unix.BPF_JGT, hi, fail, next)
		p.jmp(unix.BPF_JEQ, hi, next, ok)
		p.ldAbs(argLo(c.idx))
		if c.op == specs.OpLessThan {
			p.jmp(unix.BPF_JGE, lo, fail, next)
		} else {
			p.jmp(unix.BPF_JGT, lo, fail, next)
		}
	}
	p.bind(ok)
}

// expandArgs turns a syscall entry's conditions into rules: nil for an
// unconditional entry, one ANDed rule normally, one rule per condition when
// an argument index repeats.
func expandArgs(args []specs.LinuxSeccompArg, act uint32) ([]rule, error) {
	if len(args) == 0 {
		return nil, nil
	}
	var cs []cond
	seen := map[uint]bool{}
	repeat := false
	for _, a := range args {
		if a.Index > 5 {
			return nil, errdefs.InvalidArgument("argument index %d (syscalls have 6)", a.Index)
		}
		switch a.Op {
		case specs.OpEqualTo, specs.OpNotEqual, specs.OpMaskedEqual, specs.OpGreaterThan,
			specs.OpGreaterEqual, specs.OpLessThan, specs.OpLessEqual:
		default:
			return nil, errdefs.InvalidArgument("unknown comparison %q", a.Op)
		}
		if seen[a.Index] {
			repeat = true
		}
		seen[a.Index] = true
		cs = append(cs, cond{idx: a.Index, op: a.Op, v: a.Value, v2: a.ValueTwo})
	}
	if !repeat {
		return []rule{{conds: cs, action: act}}, nil
	}
	rules := make([]rule, len(cs))
	for i, c := range cs {
		rules[i] = rule{conds: []cond{c}, action: act}
	}
	return rules, nil
}
