package spec

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// knownCapabilities lists the capabilities "ALL" grants.
func knownCapabilities() []string {
	return append([]string(nil), allCaps...)
}

func capName(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "ALL" || strings.HasPrefix(s, "CAP_") {
		return s
	}
	return "CAP_" + s
}

// Capabilities applies CRI add/drop lists (with "ALL") to the default set.
// The result goes into bounding, effective and permitted; ambient ones also
// into inheritable, as the kernel requires.
func Capabilities(privileged bool, c *runtimeapi.Capability) (*specs.LinuxCapabilities, error) {
	set := map[string]bool{}
	if privileged {
		for _, n := range knownCapabilities() {
			set[n] = true
		}
	} else {
		for _, n := range DefaultCapabilities {
			set[n] = true
		}
	}
	valid := map[string]bool{}
	for _, n := range knownCaps {
		valid[n] = true
	}
	check := func(n string) error {
		if n != "ALL" && !valid[n] {
			return errdefs.InvalidArgument("unknown capability %q", n)
		}
		return nil
	}
	if !privileged {
		for _, a := range c.GetAddCapabilities() {
			if capName(a) == "ALL" {
				for _, n := range knownCapabilities() {
					set[n] = true
				}
			}
		}
		for _, d := range c.GetDropCapabilities() {
			if capName(d) == "ALL" {
				set = map[string]bool{}
			}
		}
		for _, a := range c.GetAddCapabilities() {
			n := capName(a)
			if err := check(n); err != nil {
				return nil, err
			}
			if n != "ALL" {
				set[n] = true
			}
		}
		for _, d := range c.GetDropCapabilities() {
			n := capName(d)
			if err := check(n); err != nil {
				return nil, err
			}
			if n != "ALL" {
				delete(set, n)
			}
		}
	}
	list := make([]string, 0, len(set))
	for n := range set {
		list = append(list, n)
	}
	sort.Strings(list)
	caps := &specs.LinuxCapabilities{Bounding: list, Effective: list, Permitted: list}
	for _, a := range c.GetAddAmbientCapabilities() {
		n := capName(a)
		if err := check(n); err != nil || n == "ALL" {
			return nil, errdefs.InvalidArgument("ambient capability %q is not a capability name", a)
		}
		if !set[n] {
			return nil, errdefs.InvalidArgument("ambient capability %s is not in the container's bounding set", n)
		}
		caps.Ambient = append(caps.Ambient, n)
		caps.Inheritable = append(caps.Inheritable, n)
	}
	return caps, nil
}

func seccompFor(p SeccompProfiles, sc *runtimeapi.LinuxContainerSecurityContext, privileged bool, caps []string) (*specs.LinuxSeccomp, error) {
	typ, ref := runtimeapi.SecurityProfile_Unconfined, ""
	if prof := sc.GetSeccomp(); prof != nil {
		typ, ref = prof.ProfileType, prof.LocalhostRef
	}
	if privileged || typ == runtimeapi.SecurityProfile_Unconfined {
		return nil, nil
	}
	if p == nil {
		return nil, errdefs.Unimplemented("seccomp profiles are not available in this build")
	}
	switch typ {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return p.RuntimeDefault(caps), nil
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return nil, errdefs.InvalidArgument("localhost seccomp profile %q must be an absolute path", ref)
		}
		prof, err := p.Load(ref)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, errdefs.NotFound("seccomp profile %s", ref)
			}
			return nil, errdefs.InvalidArgument("seccomp profile %s: %v", ref, err)
		}
		return prof, nil
	}
	return nil, errdefs.InvalidArgument("unknown seccomp profile type %v", typ)
}
