package cri

import (
	"context"
	"errors"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/meta"
)

type rec struct{ id string }

func TestFindByID(t *testing.T) {
	recs := []*rec{{"abc123"}, {"abd456"}, {"ffff"}}
	get := func(id string) (*rec, error) {
		for _, r := range recs {
			if r.id == id {
				return r, nil
			}
		}
		return nil, errdefs.NotFound("rec %q", id)
	}
	all := func() ([]*rec, error) { return recs, nil }
	idOf := func(r *rec) string { return r.id }
	for _, tc := range []struct {
		id, want string
		kind     error
	}{
		{id: "abc123", want: "abc123"},
		{id: "abc", want: "abc123"},
		{id: "f", want: "ffff"},
		{id: "ab", kind: errdefs.ErrInvalidArgument},
		{id: "", kind: errdefs.ErrInvalidArgument},
		{id: "zzz", kind: errdefs.ErrNotFound},
	} {
		got, err := findByID("rec", tc.id, get, all, idOf)
		if tc.kind != nil {
			if !errors.Is(err, tc.kind) {
				t.Errorf("findByID(%q) err = %v, want %v", tc.id, err, tc.kind)
			}
			continue
		}
		if err != nil || got.id != tc.want {
			t.Errorf("findByID(%q) = %v, %v; want %s", tc.id, got, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	var n names
	if err := n.reserve("pod_ns_uid_0", "a"); err != nil {
		t.Fatal(err)
	}
	if err := n.reserve("pod_ns_uid_0", "a"); err != nil {
		t.Fatalf("same owner again: %v", err)
	}
	if err := n.reserve("pod_ns_uid_0", "b"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second owner: %v", err)
	}
	n.release("pod_ns_uid_0", "b") // not the owner: no effect
	if err := n.reserve("pod_ns_uid_0", "b"); err == nil {
		t.Fatal("release by a non-owner freed the name")
	}
	n.release("pod_ns_uid_0", "a")
	if err := n.reserve("pod_ns_uid_0", "b"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestKeyedLocks(t *testing.T) {
	var k keyedLocks
	var wg sync.WaitGroup
	counter := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := k.lock("x")
			counter++
			unlock()
		}()
	}
	wg.Wait()
	if counter != 50 {
		t.Fatalf("counter = %d", counter)
	}
	if len(k.locks) != 0 {
		t.Fatalf("%d locks left behind", len(k.locks))
	}
}

func TestLogPath(t *testing.T) {
	for _, tc := range []struct {
		dir, rel, want string
		bad            bool
	}{
		{"/logs", "c/0.log", "/logs/c/0.log", false},
		{"/logs", "", "", false},
		{"/logs", "../escape.log", "", true},
		{"/logs", "a/../../x", "", true},
		{"", "x.log", "", true},
		{"/logs/", "c/0.log", "/logs/c/0.log", false},
		{"/var/log/pods/../../etc", "c/0.log", "", true},
		{"/logs/./x", "c/0.log", "", true},
		{"/logs//x", "c/0.log", "", true},
		{"logs", "c/0.log", "", true},
	} {
		got, err := logPath(tc.dir, tc.rel)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("logPath(%q, %q) = %q, %v", tc.dir, tc.rel, got, err)
		}
	}
}

func TestUpdateRuntimeConfigPodCIDRs(t *testing.T) {
	s := New(Options{})
	req := func(cidr string) *runtimeapi.UpdateRuntimeConfigRequest {
		return &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
			NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}}
	}
	if _, err := s.UpdateRuntimeConfig(context.Background(), req("10.244.1.0/24, fd00:1::/64")); err != nil {
		t.Fatal(err)
	}
	got := s.netRequest(&meta.Pod{ID: "p"}, &runtimeapi.PodSandboxConfig{}).PodCIDRs
	if len(got) != 2 || got[0] != "10.244.1.0/24" || got[1] != "fd00:1::/64" {
		t.Fatalf("PodCIDRs = %q", got)
	}
	if _, err := s.UpdateRuntimeConfig(context.Background(), req("not-a-cidr")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad CIDR: %v", err)
	}
}
