package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamPodSandboxMetrics sends the ListPodSandboxMetrics result one pod a
// message, as StreamPodSandboxStats does, so no message grows with the
// number of pods.
func (s *Server) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	resp, err := s.ListPodSandboxMetrics(stream.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		return err
	}
	for _, m := range resp.PodMetrics {
		if err := stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: []*runtimeapi.PodSandboxMetrics{m}}); err != nil {
			return fmt.Errorf("stream metrics of pod %s: %w", m.PodSandboxId, err)
		}
	}
	return nil
}
