package cri

import (
	"context"
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/meta"
)

// ContainerStatus reports a container's state, exit code and reason, the
// resources in effect, its stop signal and, verbose, what crictl inspect
// shows under "info".
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c, cfg, st, err := s.criContainer(ctx, rec)
	if err != nil {
		return nil, err
	}
	res, err := resourcesOf(rec)
	if err != nil {
		return nil, err
	}
	status := &runtimeapi.ContainerStatus{
		Id: c.Id, Metadata: c.Metadata, State: c.State, CreatedAt: c.CreatedAt,
		Image: c.Image, ImageRef: c.ImageRef, ImageId: c.ImageId,
		Labels: c.Labels, Annotations: c.Annotations, Mounts: cfg.GetMounts(), LogPath: rec.LogPath,
		Reason: st.Reason, Message: st.Message,
		Resources:  res,
		StopSignal: criStopSignal(cfg, rec.StopSignal),
	}
	if !st.StartedAt.IsZero() {
		status.StartedAt = st.StartedAt.UnixNano()
	}
	if st.Status == StateExited {
		status.ExitCode = st.ExitCode
		status.FinishedAt = st.FinishedAt.UnixNano()
		// The reason is the exit record's (the shim package's rule, or
		// ReasonShimLost); Shims fill it in for records without one.
		status.Reason = st.Reason
	}
	user := &runtimeapi.LinuxContainerUser{Uid: int64(rec.UID), Gid: int64(rec.GID)}
	for _, g := range rec.Groups {
		user.SupplementalGroups = append(user.SupplementalGroups, int64(g))
	}
	status.User = &runtimeapi.ContainerUser{Linux: user}
	resp := &runtimeapi.ContainerStatusResponse{Status: status}
	if req.GetVerbose() {
		info, err := containerInfoJSON(rec, cfg, st)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": info}
	}
	return resp, nil
}

// containerInfo is ContainerStatus's verbose "info", with the keys and
// shapes of containerd's (the CRI config and OCI spec by encoding/json), so
// that tools reading `crictl inspect` find what they expect.
type containerInfo struct {
	SandboxID string `json:"sandboxID"`
	// Pid is the host PID of the container's process: its init at the
	// start barrier while created, the user process once started; 0 when
	// nothing runs.
	Pid int `json:"pid"`
	// Rootfs is where the container's root filesystem is mounted.
	Rootfs string `json:"rootfs"`
	// Bundle holds the spec (config.json), the rootfs and the exit record.
	Bundle string                      `json:"bundle"`
	Config *runtimeapi.ContainerConfig `json:"config"`
	// RuntimeSpec is the OCI spec Skiff generated at CreateContainer, with
	// the resources of later UpdateContainerResources calls. Absent for
	// containers created before Skiff kept it.
	RuntimeSpec *specs.Spec `json:"runtimeSpec,omitempty"`
}

func containerInfoJSON(rec *meta.Container, cfg *runtimeapi.ContainerConfig, st ContainerState) (string, error) {
	info := containerInfo{SandboxID: rec.PodID, Rootfs: rec.Rootfs, Bundle: rec.Bundle, Config: cfg}
	if st.Status == StateCreated || st.Status == StateRunning {
		info.Pid = st.Pid
	}
	sp, err := readSpec(rec)
	switch {
	case err == nil:
		info.RuntimeSpec = sp
	case !errdefs.IsNotFound(err):
		return "", err
	}
	b, err := json.Marshal(&info)
	if err != nil {
		return "", fmt.Errorf("container %s: encode info: %w", rec.ID, err)
	}
	return string(b), nil
}
