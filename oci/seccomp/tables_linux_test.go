package seccomp

import (
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// TestTablesMatchLibrary keeps the generated tables (zsyscalls_linux.go)
// equal to the library they come from: after a go-seccomp-bpf update, run
// go generate ./oci/seccomp.
func TestTablesMatchLibrary(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  *syscallTable
		want *arch.Info
	}{
		{"x86_64", &tableX86_64, arch.X86_64},
		{"i386", &tableI386, arch.I386},
		{"x32", &tableX32, arch.X32},
		{"aarch64", &tableAARCH64, arch.AARCH64},
		{"arm", &tableARM, arch.ARM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got.audit != uint32(tc.want.ID) || tc.got.mask != uint32(tc.want.SeccompMask) {
				t.Errorf("audit %#x mask %#x, library has %#x %#x", tc.got.audit, tc.got.mask, uint32(tc.want.ID), uint32(tc.want.SeccompMask))
			}
			if len(tc.got.calls) != len(tc.want.SyscallNumbers) {
				t.Errorf("%d syscalls, library has %d", len(tc.got.calls), len(tc.want.SyscallNumbers))
			}
			prev := -1
			for _, c := range tc.got.calls {
				if c.nr <= prev {
					t.Errorf("syscall %d (%s) out of order", c.nr, c.name)
				}
				prev = c.nr
				if n := tc.want.SyscallNumbers[c.nr]; n != c.name {
					t.Errorf("syscall %d is %q, library has %q", c.nr, c.name, n)
				}
			}
		})
	}
}
