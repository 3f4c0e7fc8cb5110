package cri

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// TestUpdatePodSandboxResources: the pod-level values are checked, kept in
// the record and shown in the verbose status; an unknown pod is NotFound.
func TestUpdatePodSandboxResources(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	run, err := e.s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{
		Config: podConfigFor("resized", runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD)})
	if err != nil {
		t.Fatal(err)
	}
	id := run.PodSandboxId
	res := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20}
	over := &runtimeapi.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 64 << 20}
	for _, tc := range []struct {
		name string
		req  *runtimeapi.UpdatePodSandboxResourcesRequest
		want error
	}{
		{"unknown pod", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "nope", Resources: res}, errdefs.ErrNotFound},
		{"negative memory", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id,
			Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}}, errdefs.ErrInvalidArgument},
		{"bad overhead", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id, Resources: res,
			Overhead: &runtimeapi.LinuxContainerResources{OomScoreAdj: 5000}}, errdefs.ErrInvalidArgument},
		{"ok", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id, Resources: res, Overhead: over}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.s.UpdatePodSandboxResources(ctx, tc.req)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	st, err := e.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Resources, Overhead *runtimeapi.LinuxContainerResources
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	if info.Resources.GetCpuQuota() != 50000 || info.Resources.GetMemoryLimitInBytes() != 256<<20 || info.Overhead.GetCpuShares() != 10 {
		t.Fatalf("verbose status shows resources %v, overhead %v", info.Resources, info.Overhead)
	}
}
