package cri

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// ImageStatus answers with an empty response, not an error, for an image that
// is not present: the kubelet uses it to decide whether to pull.
func (s *Server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, errdefs.InvalidArgument("image status: image reference is empty")
	}
	img, err := s.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image status %q: %w", ref, err)
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"id":             img.ID,
			"manifestDigest": img.ManifestDigest,
			"imageSpec":      img.Config,
		})
		if err != nil {
			return nil, fmt.Errorf("image status %q: verbose info: %w", ref, err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}
