package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// errNoCheckpoint says what checkpoint and restore would need: CRIU
// driven by the executor (dump of a container's processes with their
// namespaces, mounts and cgroups; restore into a fresh rootfs and pod),
// plus the checkpoint archive format the kubelet and CRI-O use. Skiff has
// none of it yet.
const errNoCheckpoint = "checkpoint/restore is not supported: Skiff's executor has no CRIU integration (process dump and restore with namespaces, mounts and cgroups) and writes no checkpoint archive"

// CheckpointContainer is not supported (see errNoCheckpoint).
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, errdefs.Unimplemented("checkpoint container %s: %s", req.GetContainerId(), errNoCheckpoint)
}

// CheckpointPod is not supported (see errNoCheckpoint).
func (s *Server) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, errdefs.Unimplemented("checkpoint pod %s: %s", req.GetPodSandboxId(), errNoCheckpoint)
}

// RestorePod is not supported (see errNoCheckpoint).
func (s *Server) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, errdefs.Unimplemented("restore pod: %s", errNoCheckpoint)
}
