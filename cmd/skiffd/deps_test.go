package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoExecutor keeps skiffd apart from what the shim owns (issue 8):
// the executor and the shim daemon run in skiff-shim only, and skiffd
// reaches them through the shim's socket or the executor's CLI. Only the
// read-only cgroup stats (oci/cgroups) and seccomp profile parsing
// (oci/seccomp) may be linked.
func TestLinksNoExecutor(t *testing.T) {
	// The go command runs this test; hack/test.sh puts it on $PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command, to list skiffd's dependencies with: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{
		"github.com/skiffcri/skiff/oci/cgroups": true,
		"github.com/skiffcri/skiff/oci/seccomp": true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		banned := pkg == "github.com/skiffcri/skiff/oci" || strings.HasPrefix(pkg, "github.com/skiffcri/skiff/oci/") ||
			pkg == "github.com/skiffcri/skiff/shim/daemon" || pkg == "github.com/skiffcri/skiff/shim/shimtest"
		if banned && !allowed[pkg] {
			t.Errorf("skiffd links %s", pkg)
		}
	}
}
