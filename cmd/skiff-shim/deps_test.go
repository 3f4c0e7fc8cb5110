package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoDaemonDeps keeps the per-pod shim lean (its PSS budget): CDI
// resolution, gRPC and the Kubernetes packages belong to skiffd; the shim
// only runs the hooks that the CDI edits put in the spec. go-seccomp-bpf's
// init builds its syscall maps on the heap of every shim: oci/seccomp
// uses tables generated from it instead.
func TestLinksNoDaemonDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command, to list skiff-shim's dependencies with: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"tags.cncf.io/", "google.golang.org/grpc", "k8s.io/", "github.com/skiffcri/skiff/cdi", "github.com/elastic/go-seccomp-bpf"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("skiff-shim links %s", pkg)
			}
		}
	}
}
