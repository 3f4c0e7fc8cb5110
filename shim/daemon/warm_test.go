package daemon

import (
	"bytes"
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/shim"
)

// TestWarmCreateRequest: the warm-up request names only fields the types
// have (a misspelt one would warm nothing) and reaches every part of a spec
// it is meant to.
func TestWarmCreateRequest(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader([]byte(warmCreateRequest)))
	dec.DisallowUnknownFields()
	var req shim.CreateRequest
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("warm-up request: %v", err)
	}
	if !warmSpecOK(req.Spec) {
		t.Errorf("warm-up spec misses a part: %+v", req.Spec)
	}
}

// warmSpecOK reports whether spec has what warmCreateRequest is meant to
// reach.
func warmSpecOK(s *specs.Spec) bool {
	return s != nil && s.Process != nil && s.Process.Capabilities != nil && len(s.Process.Rlimits) > 0 &&
		len(s.Mounts) > 1 && s.Hooks != nil && s.Linux != nil && s.Linux.Resources != nil &&
		s.Linux.Resources.Memory != nil && s.Linux.Resources.CPU != nil && s.Linux.Resources.Pids != nil &&
		s.Linux.Seccomp != nil && len(s.Linux.Seccomp.Syscalls) > 0 && len(s.Linux.Devices) > 0 && len(s.Linux.Namespaces) > 0
}
