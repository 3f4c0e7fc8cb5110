package cgroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// cgroup v2 has no devices files: device access is decided by an eBPF
// program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup. The
// program is generated here from the OCI rules, instruction by instruction,
// to avoid an eBPF library.
//
// Rule semantics follow the v1 devices controller: rules are applied in
// order and a later rule overrides an earlier one, so the program checks
// them from last to first and the first match decides. An allow rule
// matches only if it grants every requested access bit; a deny rule
// matches if it refuses any. With no match, access is allowed, which is the
// state of a fresh v1 cgroup (every real spec starts with "deny all").

// eBPF encoding constants (linux/bpf.h, linux/bpf_common.h).
const (
	ebpfALU64 = 0x07
	ebpfJMP   = 0x05
	ebpfLDX   = 0x01

	ebpfMOV  = 0xb0
	ebpfAND  = 0x50
	ebpfRSH  = 0x70
	ebpfJNE  = 0x50
	ebpfJEQ  = 0x10
	ebpfEXIT = 0x90
	ebpfK    = 0x00
	ebpfX    = 0x08
	ebpfMEM  = 0x60
	ebpfW    = 0x00

	devcgBlock = 1 // BPF_DEVCG_DEV_BLOCK
	devcgChar  = 2 // BPF_DEVCG_DEV_CHAR
	devcgMknod = 1 // BPF_DEVCG_ACC_MKNOD
	devcgRead  = 2
	devcgWrite = 4
)

type ebpfInsn struct {
	code uint8
	regs uint8 // dst | src<<4
	off  int16
	imm  int32
}

func movImm(dst uint8, imm int32) ebpfInsn {
	return ebpfInsn{code: ebpfALU64 | ebpfMOV | ebpfK, regs: dst, imm: imm}
}
func movReg(dst, src uint8) ebpfInsn {
	return ebpfInsn{code: ebpfALU64 | ebpfMOV | ebpfX, regs: dst | src<<4}
}
func andImm(dst uint8, imm int32) ebpfInsn {
	return ebpfInsn{code: ebpfALU64 | ebpfAND | ebpfK, regs: dst, imm: imm}
}
func rshImm(dst uint8, imm int32) ebpfInsn {
	return ebpfInsn{code: ebpfALU64 | ebpfRSH | ebpfK, regs: dst, imm: imm}
}
func ldxW(dst, src uint8, off int16) ebpfInsn {
	return ebpfInsn{code: ebpfLDX | ebpfMEM | ebpfW, regs: dst | src<<4, off: off}
}
func jmpImm(op uint8, dst uint8, imm int32, off int16) ebpfInsn {
	return ebpfInsn{code: ebpfJMP | op | ebpfK, regs: dst, imm: imm, off: off}
}
func exit() ebpfInsn { return ebpfInsn{code: ebpfJMP | ebpfEXIT} }

// DeviceProgram compiles OCI device rules into an eBPF cgroup device
// program, returned in its wire encoding (8 bytes per instruction).
func DeviceProgram(rules []specs.LinuxDeviceCgroup) ([]byte, error) {
	// r1 = ctx {access_type = access<<16 | type, major, minor}
	prog := []ebpfInsn{
		ldxW(2, 1, 0),
		movReg(3, 2), andImm(3, 0xffff), // r3 = type
		movReg(4, 2), rshImm(4, 16), // r4 = requested access
		ldxW(5, 1, 4), // r5 = major
		ldxW(6, 1, 8), // r6 = minor
	}
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		var acc int32
		access := r.Access
		if access == "" {
			access = "rwm"
		}
		for _, c := range access {
			switch c {
			case 'r':
				acc |= devcgRead
			case 'w':
				acc |= devcgWrite
			case 'm':
				acc |= devcgMknod
			default:
				return nil, errdefs.InvalidArgument("device rule %d: access %q", i, r.Access)
			}
		}
		var block []ebpfInsn
		// Each check jumps to the end of the block on mismatch; offsets
		// are fixed up once the block length is known.
		var fixups []int
		check := func(in ebpfInsn) {
			fixups = append(fixups, len(block))
			block = append(block, in)
		}
		switch r.Type {
		case "", "a":
		case "c":
			check(jmpImm(ebpfJNE, 3, devcgChar, 0))
		case "b":
			check(jmpImm(ebpfJNE, 3, devcgBlock, 0))
		default:
			return nil, errdefs.InvalidArgument("device rule %d: type %q", i, r.Type)
		}
		block = append(block, movReg(7, 4))
		if r.Allow {
			block = append(block, andImm(7, ^acc&7))
			check(jmpImm(ebpfJNE, 7, 0, 0))
		} else {
			block = append(block, andImm(7, acc))
			check(jmpImm(ebpfJEQ, 7, 0, 0))
		}
		if r.Major != nil && *r.Major >= 0 {
			check(jmpImm(ebpfJNE, 5, int32(*r.Major), 0))
		}
		if r.Minor != nil && *r.Minor >= 0 {
			check(jmpImm(ebpfJNE, 6, int32(*r.Minor), 0))
		}
		verdict := int32(0)
		if r.Allow {
			verdict = 1
		}
		block = append(block, movImm(0, verdict), exit())
		for _, at := range fixups {
			block[at].off = int16(len(block) - at - 1)
		}
		prog = append(prog, block...)
	}
	prog = append(prog, movImm(0, 1), exit())
	if len(prog) > 4096 {
		return nil, errdefs.InvalidArgument("%d device rules make a program too long", len(rules))
	}
	out := make([]byte, 8*len(prog))
	for i, in := range prog {
		out[8*i] = in.code
		out[8*i+1] = in.regs
		binary.LittleEndian.PutUint16(out[8*i+2:], uint16(in.off))
		binary.LittleEndian.PutUint32(out[8*i+4:], uint32(in.imm))
	}
	if !littleEndian() {
		return nil, errdefs.Unimplemented("eBPF device programs on big-endian hosts")
	}
	return out, nil
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// bpf(2) attribute layouts for the commands used here.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
	ifindex     uint32
	attachType  uint32
}

type progAttachAttr struct {
	targetFd    uint32
	attachBpfFd uint32
	attachType  uint32
	attachFlags uint32
}

type progQueryAttr struct {
	targetFd    uint32
	attachType  uint32
	queryFlags  uint32
	attachFlags uint32
	progIDs     uint64
	progCnt     uint32
	_           uint32
}

type getFdByIDAttr struct {
	id uint32
	_  [4]uint32
}

func bpf(cmd uintptr, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// attachDeviceProgram loads prog and attaches it to the cgroup directory,
// then detaches whatever device programs were attached there before, so
// Set can be called again to update the rules. The new program goes in
// before the old ones go out: there is no moment without a filter.
func attachDeviceProgram(dir string, prog []byte) error {
	license := []byte("Apache-2.0\x00")
	logBuf := make([]byte, 64*1024)
	load := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(prog) / 8),
		insns:    uint64(uintptr(unsafe.Pointer(&prog[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1,
		logSize:  uint32(len(logBuf)),
		logBuf:   uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
	}
	copy(load.progName[:], "skiff_devices")
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&load), unsafe.Sizeof(load))
	runtime.KeepAlive(prog)
	runtime.KeepAlive(license)
	if err != nil {
		msg := unix.ByteSliceToString(logBuf)
		return fmt.Errorf("load device eBPF program: %w (verifier: %s)", &os.SyscallError{Syscall: "bpf(BPF_PROG_LOAD)", Err: err}, msg)
	}
	progFd := int(fd)
	defer unix.Close(progFd)

	cg, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(cg)

	old, err := queryDevicePrograms(cg)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	attach := progAttachAttr{targetFd: uint32(cg), attachBpfFd: uint32(progFd), attachType: unix.BPF_CGROUP_DEVICE, attachFlags: unix.BPF_F_ALLOW_MULTI}
	if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attach), unsafe.Sizeof(attach)); err != nil {
		return &os.PathError{Op: "bpf(BPF_PROG_ATTACH)", Path: dir, Err: err}
	}
	var errs []error
	for _, id := range old {
		get := getFdByIDAttr{id: id}
		ofd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&get), unsafe.Sizeof(get))
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			errs = append(errs, fmt.Errorf("get old device program %d: %w", id, err))
			continue
		}
		detach := progAttachAttr{targetFd: uint32(cg), attachBpfFd: uint32(ofd), attachType: unix.BPF_CGROUP_DEVICE}
		if _, err := bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&detach), unsafe.Sizeof(detach)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, &os.PathError{Op: "bpf(BPF_PROG_DETACH)", Path: dir, Err: err})
		}
		unix.Close(int(ofd))
	}
	return errors.Join(errs...)
}

// queryDevicePrograms lists the ids of device programs attached directly
// to the cgroup.
func queryDevicePrograms(cg int) ([]uint32, error) {
	ids := make([]uint32, 64)
	q := progQueryAttr{targetFd: uint32(cg), attachType: unix.BPF_CGROUP_DEVICE, progIDs: uint64(uintptr(unsafe.Pointer(&ids[0]))), progCnt: uint32(len(ids))}
	_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&q), unsafe.Sizeof(q))
	runtime.KeepAlive(ids)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "bpf(BPF_PROG_QUERY)", Err: err}
	}
	return ids[:q.progCnt], nil
}
