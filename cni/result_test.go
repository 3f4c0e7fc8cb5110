package cni

import (
	"context"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

func TestCachedResult(t *testing.T) {
	e := newFakeEnv(t)
	e.conf(t, "10-a.conflist", "neta", "fakeip")
	m := e.manager(t, "neta")
	ctx := context.Background()
	if _, err := m.CachedResult("pod1", ""); !errdefs.IsNotFound(err) {
		t.Fatalf("before Setup: %v, want not found", err)
	}
	req := SetupRequest{PodID: "pod1", NetNS: "/run/fake/ns", PodName: "web", PodNamespace: "default", PodUID: "u1"}
	if _, err := m.Setup(ctx, req); err != nil {
		t.Fatal(err)
	}
	// A restarted manager reads the same cache.
	m.Close()
	m = e.manager(t, "neta")
	res, err := m.CachedResult("pod1", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 3 || res.IPs[1].Address.String() != "10.1.2.3/24" || len(res.Interfaces) != 2 || res.Interfaces[1].Sandbox != "/run/fake/ns" {
		t.Fatalf("cached result = %+v", res)
	}
	if err := m.Teardown(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CachedResult("pod1", ""); !errdefs.IsNotFound(err) {
		t.Fatalf("after Teardown: %v, want not found", err)
	}
}
