package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/image"
)

// ListImages lists every stored image, or those matching the filter's image reference.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.images.List(ctx, req.GetFilter().GetImage().GetImage())
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, toCRIImage(img))
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// StreamImages sends the same list as ListImages, one image a message.
func (s *Server) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	imgs, err := s.images.List(stream.Context(), req.GetFilter().GetImage().GetImage())
	if err != nil {
		return fmt.Errorf("stream images: %w", err)
	}
	for _, img := range imgs {
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: []*runtimeapi.Image{toCRIImage(img)}}); err != nil {
			return err
		}
	}
	return nil
}

func toCRIImage(img image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
		Pinned:      img.Pinned,
	}
	uid, name := image.UserFromConfig(img.Config.Config.User)
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = name
	return out
}
