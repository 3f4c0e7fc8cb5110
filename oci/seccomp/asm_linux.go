package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// asm is a tiny classic-BPF assembler with labels. Conditional jumps in
// classic BPF reach at most 255 instructions ahead, unconditional ones
// (ja) 2^32; the compiler only uses conditional jumps for short local
// hops and ja for everything else, and assemble checks the bound.
type asm struct {
	ins    []insn
	labels []int // label -> pc, -1 while unbound
}

type insn struct {
	code   uint16
	k      uint32
	jt, jf int // label ids for conditional jumps, next for fall-through
	target int // label id for ja
}

// next is the pseudo-label "the following instruction". Negative label
// ids are relative: labelAt(n) skips n instructions, next is labelAt(0).
const next = -1

func (a *asm) labelAt(n int) int { return -1 - n }

// maxInsns is BPF_MAXINSNS, the kernel's limit per filter.
const maxInsns = 4096

func (a *asm) label() int {
	a.labels = append(a.labels, -1)
	return len(a.labels) - 1
}

func (a *asm) bind(l int) { a.labels[l] = len(a.ins) }

func (a *asm) ldAbs(off uint32) {
	a.ins = append(a.ins, insn{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off, jt: next, jf: next, target: next})
}

func (a *asm) andK(k uint32) {
	a.ins = append(a.ins, insn{code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, k: k, jt: next, jf: next, target: next})
}

// jmp emits a conditional jump (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET) on the
// accumulator against k.
func (a *asm) jmp(cond uint16, k uint32, jt, jf int) {
	a.ins = append(a.ins, insn{code: unix.BPF_JMP | cond | unix.BPF_K, k: k, jt: jt, jf: jf, target: next})
}

func (a *asm) ja(l int) {
	a.ins = append(a.ins, insn{code: unix.BPF_JMP | unix.BPF_JA, jt: next, jf: next, target: l})
}

func (a *asm) ret(v uint32) {
	a.ins = append(a.ins, insn{code: unix.BPF_RET | unix.BPF_K, k: v, jt: next, jf: next, target: next})
}

func (a *asm) assemble() ([]unix.SockFilter, error) {
	if len(a.ins) > maxInsns {
		return nil, errdefs.InvalidArgument("seccomp filter needs %d instructions, the kernel allows %d", len(a.ins), maxInsns)
	}
	out := make([]unix.SockFilter, len(a.ins))
	off := func(pc, l int) (int, error) {
		if l < 0 {
			return -1 - l, nil
		}
		t := a.labels[l]
		if t < 0 {
			return 0, fmt.Errorf("seccomp assembler: label %d never bound", l)
		}
		d := t - pc - 1
		if d < 0 {
			return 0, fmt.Errorf("seccomp assembler: backward jump at %d", pc)
		}
		return d, nil
	}
	for pc, in := range a.ins {
		f := unix.SockFilter{Code: in.code, K: in.k}
		if in.code == unix.BPF_JMP|unix.BPF_JA {
			d, err := off(pc, in.target)
			if err != nil {
				return nil, err
			}
			f.K = uint32(d)
		} else if in.code&0x07 == unix.BPF_JMP {
			jt, err := off(pc, in.jt)
			if err != nil {
				return nil, err
			}
			jf, err := off(pc, in.jf)
			if err != nil {
				return nil, err
			}
			if jt > 255 || jf > 255 {
				return nil, fmt.Errorf("seccomp assembler: conditional jump at %d too far (%d/%d)", pc, jt, jf)
			}
			f.Jt, f.Jf = uint8(jt), uint8(jf)
		}
		out[pc] = f
	}
	return out, nil
}
