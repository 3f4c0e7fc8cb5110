package oci

import (
	"fmt"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// capSets are the five capability sets as bit masks (bit n = capability n).
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// capByName maps "CAP_CHOWN" style names to numbers, from the list that
// moby/sys/capability keeps current with the kernel headers.
func capByName(name string) (capability.Cap, bool) {
	n := strings.ToLower(strings.TrimPrefix(strings.ToUpper(name), "CAP_"))
	for _, c := range capability.ListKnown() {
		if c.String() == n {
			return c, true
		}
	}
	return 0, false
}

// parseCaps turns the spec's capability names into masks. Names the
// running kernel does not know (above last) are dropped, as other runtimes
// do, so a spec written for a newer kernel still runs; names nobody knows
// are an error.
func parseCaps(c *specs.LinuxCapabilities, last capability.Cap) (capSets, error) {
	var s capSets
	set := func(dst *uint64, names []string, which string) error {
		for _, name := range names {
			cp, ok := capByName(name)
			if !ok {
				return errdefs.InvalidArgument("unknown capability %q in %s set", name, which)
			}
			if cp > last {
				continue
			}
			*dst |= 1 << uint(cp)
		}
		return nil
	}
	for _, x := range []struct {
		dst   *uint64
		names []string
		which string
	}{
		{&s.bounding, c.Bounding, "bounding"},
		{&s.effective, c.Effective, "effective"},
		{&s.permitted, c.Permitted, "permitted"},
		{&s.inheritable, c.Inheritable, "inheritable"},
		{&s.ambient, c.Ambient, "ambient"},
	} {
		if err := set(x.dst, x.names, x.which); err != nil {
			return capSets{}, err
		}
	}
	return s, nil
}

// dropBounding removes every capability not in s.bounding from the calling
// thread's bounding set. It needs CAP_SETPCAP, so it runs before the user
// switch. Must be called with the OS thread locked.
func dropBounding(s capSets, last capability.Cap) error {
	for c := capability.Cap(0); c <= last; c++ {
		if s.bounding&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop %s from bounding set: %w", c, err)
		}
	}
	return nil
}

// applyCaps sets the effective, permitted and inheritable sets with capset
// and the ambient set with PR_CAP_AMBIENT, on the calling thread only.
// Must be called with the OS thread locked, after the user switch (which
// clears the effective set).
func applyCaps(s capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range 2 {
		data[i].Effective = uint32(s.effective >> (32 * i))
		data[i].Permitted = uint32(s.permitted >> (32 * i))
		data[i].Inheritable = uint32(s.inheritable >> (32 * i))
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// The kernel only allows ambient capabilities that are also permitted
	// and inheritable; like runc, the others are skipped rather than
	// failing the container (runc's default spec lists ambient caps
	// without inheritable ones).
	amb := s.ambient & s.permitted & s.inheritable
	for c := range 64 {
		if amb&(1<<uint(c)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %s: %w", capability.Cap(c), err)
		}
	}
	return nil
}
