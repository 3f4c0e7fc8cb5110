package cri

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
)

// UpdatePodSandboxResources takes the pod-level resources and overhead the
// kubelet computed for a pod (in-place resize, KEP-1287; pod-level
// resources, KEP-2837). The kubelet writes the pod's cgroup (the
// cgroup_parent) itself and each container's through
// UpdateContainerResources; Skiff runs no pause container and its pod init
// uses next to nothing, so there is nothing of the runtime's own to resize.
// The values are checked as UpdateContainerResources checks a container's,
// kept in the pod's record and shown in the verbose PodSandboxStatus
// ("resources", "overhead"), as containerd keeps them in its sandbox
// status.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	rec, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	for what, r := range map[string]*runtimeapi.LinuxContainerResources{"resources": req.GetResources(), "overhead": req.GetOverhead()} {
		if r == nil {
			continue
		}
		if _, err := spec.Resources(r); err != nil {
			return nil, fmt.Errorf("update pod sandbox %s %s: %w", rec.ID, what, err)
		}
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	// Re-read under the lock: a concurrent change of the record must not
	// be lost.
	if rec, err = s.meta.Pod(rec.ID); err != nil {
		return nil, err
	}
	if rec.Resources, err = marshalResources(req.GetResources()); err != nil {
		return nil, err
	}
	if rec.Overhead, err = marshalResources(req.GetOverhead()); err != nil {
		return nil, err
	}
	if err := s.meta.PutPod(rec); err != nil {
		return nil, fmt.Errorf("update pod sandbox %s: %w", rec.ID, err)
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

// marshalResources is the record form of r; nil stays nil.
func marshalResources(r *runtimeapi.LinuxContainerResources) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	b, err := protojson.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode resources: %w", err)
	}
	return b, nil
}

// podResources decodes a pod record's resources field; nil when unset.
func podResources(b []byte) (*runtimeapi.LinuxContainerResources, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var r runtimeapi.LinuxContainerResources
	if err := protojson.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode pod resources: %w", err)
	}
	return &r, nil
}
