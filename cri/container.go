package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cdi"
	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/phases"
	"github.com/skiffcri/skiff/meta"
)

func (s *Server) containerDir(id string) string { return s.containers.Dir(id) }

func containerConfig(rec *meta.Container) (*runtimeapi.ContainerConfig, error) {
	cfg := &runtimeapi.ContainerConfig{}
	if err := protojson.Unmarshal(rec.Config, cfg); err != nil {
		return nil, fmt.Errorf("container %s: decode config: %w", rec.ID, err)
	}
	return cfg, nil
}

// checkLogDirectory refuses a pod log directory that is relative or not in
// clean form ("/var/log/pods/../../etc"): the kubelet always sends a clean
// absolute path, and anything else would let log files land outside the
// directory it meant. An empty directory (no logs) and one trailing slash
// are fine.
func checkLogDirectory(dir string) error {
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) {
		return errdefs.InvalidArgument("pod log directory %q is not an absolute path", dir)
	}
	if c := filepath.Clean(dir); c != dir && c+"/" != dir {
		return errdefs.InvalidArgument("pod log directory %q is not a clean path (it would be %q)", dir, c)
	}
	return nil
}

// logPath joins the pod's log directory and the container's log path and
// refuses paths that would leave the directory.
func logPath(dir, rel string) (string, error) {
	if rel == "" {
		return "", nil
	}
	if dir == "" {
		return "", errdefs.InvalidArgument("container log path %q given but the pod has no log directory", rel)
	}
	// Checked here too for pods recorded before RunPodSandbox checked it.
	if err := checkLogDirectory(dir); err != nil {
		return "", err
	}
	p := filepath.Join(dir, rel)
	if r, err := filepath.Rel(dir, p); err != nil || r == ".." || strings.HasPrefix(r, "../") || filepath.IsAbs(rel) {
		return "", errdefs.InvalidArgument("container log path %q escapes the log directory %s", rel, dir)
	}
	return p, nil
}

// CreateContainer prepares a container's rootfs and spec and has the pod's
// shim create it, stopped at its start barrier.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (_ *runtimeapi.CreateContainerResponse, retErr error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, errdefs.InvalidArgument("container metadata needs a name")
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, errdefs.InvalidArgument("container %q has no image", cfg.GetMetadata().GetName())
	}
	pod, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if pod.State != podReady {
		return nil, errdefs.FailedPrecondition("create container in pod %s: %v", pod.ID, errPodNotReady)
	}
	recorded, err := podConfig(pod)
	if err != nil {
		return nil, err
	}
	podCfg := req.GetSandboxConfig()
	if podCfg == nil {
		podCfg = recorded
	}
	// The CDI devices asked for are checked before anything is made; they
	// are resolved and injected into the spec once it is generated.
	cdiDevices, err := requestedCDIDevices(cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	if len(cdiDevices) > 0 && s.cdi == nil {
		return nil, errdefs.FailedPrecondition("create container %q: CDI devices %s requested but CDI is not configured",
			cfg.GetMetadata().GetName(), strings.Join(cdiDevices, ", "))
	}
	id := newID()
	name := containerName(cfg.GetMetadata(), podCfg.GetMetadata())
	if err := s.ctrNames.reserve(name, id); err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	unlock := s.locks.lock(id)
	defer unlock()
	st := phases.Start()
	var undo []func()
	defer func() {
		if retErr == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		s.ctrNames.release(name, id)
	}()

	img, err := s.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return nil, fmt.Errorf("create container %s: image %q: %w", name, cfg.GetImage().GetImage(), err)
	}
	vols, err := s.imageVolumes(ctx, pod, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}

	// The log directory is the one the pod was created with, whatever the
	// request's copy of the pod config says.
	lp, err := logPath(recorded.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return nil, err
	}
	if lp != "" {
		if err := os.MkdirAll(filepath.Dir(lp), 0o755); err != nil {
			return nil, fmt.Errorf("create container %s: log dir: %w", name, err)
		}
	}

	raw, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode container config: %w", err)
	}
	// The names the pod used for the image (the kubelet passes its ID as
	// image and the pod spec's as user_specified_image): one content can
	// be known by several, and ContainerStatus shows the pod's.
	imageName, imageRef := img.NamesFor(cfg.GetImage().GetUserSpecifiedImage(), cfg.GetImage().GetImage())
	if imageName == "" {
		imageName = cfg.GetImage().GetImage()
	}
	if imageRef == "" {
		imageRef = img.ID
	}
	rec := &meta.Container{
		ID: id, PodID: pod.ID, Name: name, Config: raw,
		ImageID: img.ID, ImageRef: imageRef, ImageName: imageName,
		CreatedAt: time.Now(), LogPath: lp, Bundle: s.containerDir(id),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		StopSignal: img.Config.Config.StopSignal,
		// The cgroup follows the pod's recorded parent, whatever the
		// request's copy of the pod config says; computed once, here.
		CgroupPath: cgroupPath(recorded, id),
	}
	st.Done("prepare")
	// Listed before they are mounted: see image_volumes.go.
	rec.ImageVolumes, rec.IDMappedImageVolumes = imageVolumeIDs(vols)
	// The record comes before the image hold, so that a crash in between
	// leaves a record whose removal releases the hold.
	if err := s.meta.PutContainer(rec); err != nil {
		return nil, err
	}
	// With the record go the image volumes only it lists.
	undo = append(undo, func() {
		if err := s.deleteContainerRecord(context.Background(), rec); err != nil {
			s.log.Warn("undo container record", "container", id, "err", err)
		}
	})
	if err := s.images.Use(ctx, img.ID, id); err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	undo = append(undo, func() { _ = s.images.Release(context.Background(), img.ID, id) })
	st.Done("record")

	// The container's directory (rootfs mount point, spec, exit record)
	// goes with a failed create.
	undo = append(undo, func() { _ = os.RemoveAll(s.containerDir(id)) })
	rootfs, err := s.rootfs.Mount(ctx, id, img.ID, RootfsOptions{UserNS: pod.Namespaces.User})
	if err != nil {
		return nil, fmt.Errorf("create container %s: rootfs: %w", name, err)
	}
	undo = append(undo, func() {
		if err := s.rootfs.Unmount(context.Background(), id); err != nil {
			s.log.Warn("undo container rootfs", "container", id, "err", err)
		}
	})
	rec.Rootfs = rootfs
	volumeSources, err := s.mountImageVolumes(ctx, rec, pod.Namespaces.User, vols)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	st.Done("rootfs")

	var targetPID string
	switch t := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); t.GetPid() {
	case runtimeapi.NamespaceMode_TARGET:
		targetPID, err = s.targetPIDNamespace(ctx, pod.ID, t.GetTargetId())
		if err != nil {
			return nil, err
		}
	case runtimeapi.NamespaceMode_POD:
		if pod.Namespaces.PID == "" {
			s.log.Debug("container asks for the pod's PID namespace but the pod shares none; it gets its own",
				"container", id, "pod", pod.ID)
		}
	}
	ociSpec, err := spec.Generate(spec.Input{
		ID: id, SandboxID: pod.ID, Pod: podCfg, Container: cfg,
		ImageName: imageName, Image: img.Config.Config, Rootfs: rootfs,
		PodNS: spec.Namespaces{Net: pod.Namespaces.Net, IPC: pod.Namespaces.IPC, UTS: pod.Namespaces.UTS, PID: pod.Namespaces.PID, User: pod.Namespaces.User},
		PodFiles: spec.PodFiles{
			Hostname: pod.Files.Hostname, Hosts: pod.Files.Hosts, ResolvConf: pod.Files.ResolvConf, Shm: pod.Files.Shm,
		},
		CgroupsPath:  rec.CgroupPath,
		TargetPIDNS:  targetPID,
		Seccomp:      s.seccomp,
		CgroupV2:     s.cgroupV2,
		ImageVolumes: volumeSources,
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if len(cdiDevices) > 0 {
		if err := s.cdi.Inject(ociSpec, cdiDevices); err != nil {
			return nil, fmt.Errorf("create container %s: %w", name, err)
		}
	}

	rec.UID, rec.GID = ociSpec.Process.User.UID, ociSpec.Process.User.GID
	rec.Groups = ociSpec.Process.User.AdditionalGids
	st.Done("spec")

	shim, err := s.shims.Connect(ctx, pod.ID)
	if err != nil {
		return nil, fmt.Errorf("create container %s: pod shim: %w", name, err)
	}
	defer shim.Close()
	created, err := shim.Create(ctx, CreateRequest{
		ID: id, Spec: ociSpec, LogPath: lp, Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Tty: cfg.GetTty(),
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	undo = append(undo, func() { _ = shim.Delete(context.Background(), id) })
	st.Done("shim_create")
	if err := s.recordCreated(rec, ociSpec, created.Pid, rec.CgroupPath); err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if err := s.meta.PutContainer(rec); err != nil {
		return nil, err
	}
	s.observed.note(id, StateCreated)
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, pod.ID, id)
	// Watched from creation: a created container killed before it ever
	// starts exits too.
	s.watchContainer(pod.ID, id)
	st.Done("recorded")
	st.Log(ctx, s.log, "rpc steps", slog.String("rpc", "CreateContainer"), slog.String("id", id))
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// requestedCDIDevices lists the CDI devices a container asks for: its
// cdi_devices, then those of its cdi.k8s.io/* annotations.
func requestedCDIDevices(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var names []string
	for _, d := range cfg.GetCDIDevices() {
		names = append(names, d.GetName())
	}
	return cdi.Requested(names, cfg.GetAnnotations())
}

func (s *Server) targetPIDNamespace(ctx context.Context, podID, target string) (string, error) {
	rec, err := s.findContainer(target)
	if err != nil {
		return "", fmt.Errorf("target container: %w", err)
	}
	if rec.PodID != podID {
		return "", errdefs.InvalidArgument("target container %s is in another pod", target)
	}
	st, err := s.containerState(ctx, rec)
	if err != nil {
		return "", err
	}
	if st.Status != StateRunning || st.Pid == 0 {
		return "", errdefs.FailedPrecondition("target container %s is not running", target)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", st.Pid), nil
}

func (s *Server) findContainer(id string) (*meta.Container, error) {
	return findByID("container", id, s.meta.Container, s.meta.Containers, func(c *meta.Container) string { return c.ID })
}

func (s *Server) podContainers(podID string) ([]*meta.Container, error) {
	all, err := s.meta.Containers()
	if err != nil {
		return nil, err
	}
	var out []*meta.Container
	for _, c := range all {
		if c.PodID == podID {
			out = append(out, c)
		}
	}
	return out, nil
}

// containerState asks the pod's shim; when the shim is gone, the exit record
// it wrote is the truth.
func (s *Server) containerState(ctx context.Context, rec *meta.Container) (ContainerState, error) {
	st, err := s.readContainerState(ctx, rec)
	if err == nil {
		s.observed.note(rec.ID, st.Status)
	}
	return st, err
}

// readContainerState is containerState without noting what it read.
func (s *Server) readContainerState(ctx context.Context, rec *meta.Container) (ContainerState, error) {
	shim, err := s.shims.Connect(ctx, rec.PodID)
	if err == nil {
		defer shim.Close()
		st, err := shim.State(ctx, rec.ID)
		if err == nil {
			return st, nil
		}
		// Not found, or the shim went away between the two calls (its
		// pod is being stopped): the exit record tells.
		if !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrUnavailable) {
			return ContainerState{}, err
		}
	}
	if st, ok := s.shims.ExitState(rec.PodID, rec.ID); ok {
		return st, nil
	}
	// The shim died while the container existed: nothing else will end
	// its processes or record its exit, so Lost does both, once. Callers
	// may or may not hold the container's lock (ContainerStatus does
	// not), so the lost path has its own: a second caller waits and then
	// finds the exit record.
	unlock := s.lostLocks.lock(rec.ID)
	defer unlock()
	st, err := s.shims.Lost(ctx, rec.PodID, rec.ID)
	if err != nil {
		s.log.Warn("container of an unreachable shim", "container", rec.ID, "pod", rec.PodID, "err", err)
		return ContainerState{Status: StateUnknown, Reason: "Unknown", Message: "the container's shim does not answer: " + err.Error()}, nil
	}
	return st, nil
}

// StartContainer releases a created container's start barrier.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	st, err := s.containerState(ctx, rec)
	if err != nil {
		return nil, err
	}
	if st.Status != StateCreated {
		return nil, errdefs.FailedPrecondition("start container %s: it is %s, not created", rec.ID, st.Status)
	}
	shim, err := s.shims.Connect(ctx, rec.PodID)
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", rec.ID, err)
	}
	defer shim.Close()
	if err := shim.Start(ctx, rec.ID); err != nil {
		return nil, fmt.Errorf("start container %s: %w", rec.ID, err)
	}
	s.observed.note(rec.ID, StateRunning)
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, rec.PodID, rec.ID)
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer sends the stop signal, waits up to the timeout, then kills
// every process of the container. Stopping a stopped container succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		// Idempotent: a container that is gone is stopped.
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopContainer(ctx, rec, time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(rec.ID)
	s.releaseExited(ctx, rec)
	unlock()
	return &runtimeapi.StopContainerResponse{}, nil
}

func (s *Server) stopContainer(ctx context.Context, rec *meta.Container, timeout time.Duration) error {
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	// An exit is final: a container seen exited (StopContainer again, the
	// RemoveContainer after it) needs no round trip to its shim.
	if seen, ok := s.observed.status(rec.ID); ok && seen == StateExited {
		s.noteExitLocked(ctx, rec.ID)
		return nil
	}
	st, err := s.containerState(ctx, rec)
	if err != nil {
		return err
	}
	if st.Status != StateRunning && st.Status != StateCreated {
		// Exited by itself: its watch may not have published the exit
		// yet, and this stop must not return (nor a removal publish
		// DELETED) before it is.
		s.noteExitLocked(ctx, rec.ID)
		return nil
	}
	shim, err := s.shims.Connect(ctx, rec.PodID)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", rec.ID, err)
	}
	defer shim.Close()
	if st.Status == StateRunning && timeout > 0 {
		cfg, err := containerConfig(rec)
		if err != nil {
			return err
		}
		if err := shim.Kill(ctx, rec.ID, int(stopSignal(cfg, rec.StopSignal)), false); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stop container %s: %w", rec.ID, err)
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = shim.Wait(wctx, rec.ID)
		cancel()
		if err == nil {
			s.noteExitLocked(ctx, rec.ID)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := shim.Kill(ctx, rec.ID, int(unix.SIGKILL), true); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: kill: %w", rec.ID, err)
	}
	// A created container has only its init at the barrier: the kill ends
	// it without the user's process ever running. Either way, wait until
	// the shim has reaped it and recorded the exit.
	if _, err := shim.Wait(ctx, rec.ID); err != nil {
		return fmt.Errorf("stop container %s: wait: %w", rec.ID, err)
	}
	// The exit watch answers too; whichever is first publishes STOPPED.
	s.noteExitLocked(ctx, rec.ID)
	return nil
}

// RemoveContainer kills the container if needed and frees its rootfs, image
// hold and name. Removing a container that does not exist succeeds.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.removeContainer(ctx, rec); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *Server) removeContainer(ctx context.Context, rec *meta.Container) error {
	st := phases.Start()
	if err := s.stopContainer(ctx, rec, 0); err != nil {
		return err
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	st.Done("stopped")
	if !s.released.has(rec.ID) {
		if err := s.deleteFromShim(ctx, rec); err != nil {
			return fmt.Errorf("remove container %s: %w", rec.ID, err)
		}
	}
	st.Done("shim_delete")
	if err := s.rootfs.Unmount(ctx, rec.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	st.Done("unmount")
	s.layers.forget(s.writableLayer(rec.ID))
	if err := os.RemoveAll(s.containerDir(rec.ID)); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	st.Done("remove_layer")
	if err := s.images.Release(ctx, rec.ImageID, rec.ID); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("release image", "container", rec.ID, "image", rec.ImageID, "err", err)
	}
	st.Done("image_release")
	if err := s.deleteContainerRecord(ctx, rec); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	s.ctrNames.release(rec.Name, rec.ID)
	s.observed.forget(rec.ID)
	s.released.forget(rec.ID)
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, rec.PodID, rec.ID)
	st.Done("record_delete")
	st.Log(ctx, s.log, "rpc steps", slog.String("rpc", "RemoveContainer"), slog.String("id", rec.ID))
	return nil
}

func criState(st ContainerState) runtimeapi.ContainerState {
	switch st.Status {
	case StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func (s *Server) criContainer(ctx context.Context, rec *meta.Container) (*runtimeapi.Container, *runtimeapi.ContainerConfig, ContainerState, error) {
	cfg, err := containerConfig(rec)
	if err != nil {
		return nil, nil, ContainerState{}, err
	}
	st, err := s.containerState(ctx, rec)
	if err != nil {
		return nil, nil, ContainerState{}, err
	}
	return criContainerOf(rec, cfg, st), cfg, st, nil
}

// criContainerOf is the CRI view of container rec in state st.
func criContainerOf(rec *meta.Container, cfg *runtimeapi.ContainerConfig, st ContainerState) *runtimeapi.Container {
	return containerEntry(rec, listedConfigOf(cfg), st)
}

// listedContainer is criContainerOf with the parts of the config
// ListContainers keeps decoded.
func (s *Server) listedContainer(rec *meta.Container, st ContainerState) (*runtimeapi.Container, error) {
	lc, err := s.listed.of(rec)
	if err != nil {
		return nil, err
	}
	return containerEntry(rec, lc, st), nil
}

// containerEntry builds a container's CRI view; its labels and annotations
// are the record's, the config's copied at create.
func containerEntry(rec *meta.Container, lc listedConfig, st ContainerState) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: rec.ID, PodSandboxId: rec.PodID,
		Metadata:  &runtimeapi.ContainerMetadata{Name: lc.name, Attempt: lc.attempt},
		Image:     &runtimeapi.ImageSpec{Image: rec.ImageName, UserSpecifiedImage: lc.userImage},
		ImageRef:  rec.ImageRef,
		ImageId:   rec.ImageID,
		State:     criState(st),
		CreatedAt: rec.CreatedAt.UnixNano(), Labels: rec.Labels, Annotations: rec.Annotations,
	}
}

func (s *Server) listContainers(ctx context.Context, f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	all, err := s.meta.Containers()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []*runtimeapi.Container
	// The kubelet lists every second: each container's status is the one
	// skiffd last saw, and only a container it has not seen yet (after a
	// restart) costs a call, one to its pod's shim for all its containers.
	podStates := map[string]map[string]ContainerState{}
	ids := make(map[string]bool, len(all))
	for _, rec := range all {
		ids[rec.ID] = true
	}
	s.observed.retain(ids)
	s.listed.retain(ids)
	for _, rec := range all {
		if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !strings.HasPrefix(rec.PodID, f.GetPodSandboxId()) {
			continue
		}
		if !matchLabels(f.GetLabelSelector(), rec.Labels) {
			continue
		}
		if status, ok := s.observed.status(rec.ID); ok {
			c, err := s.listedContainer(rec, ContainerState{Status: status})
			if err != nil {
				s.log.Warn("skip container", "container", rec.ID, "err", err)
				continue
			}
			if f.GetState() == nil || f.GetState().GetState() == c.State {
				out = append(out, c)
			}
			continue
		}
		states, asked := podStates[rec.PodID]
		if !asked {
			// A shim that does not answer leaves every container of the
			// pod to containerState, which reads exit records and handles
			// a lost shim.
			states, _ = s.shims.States(ctx, rec.PodID)
			podStates[rec.PodID] = states
		}
		var c *runtimeapi.Container
		var err error
		if st, ok := states[rec.ID]; ok {
			s.observed.note(rec.ID, st.Status)
			c, err = s.listedContainer(rec, st)
		} else {
			c, _, _, err = s.criContainer(ctx, rec)
		}
		if err != nil {
			s.log.Warn("skip container", "container", rec.ID, "err", err)
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != c.State {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

// ListContainers lists containers matching the filter.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	out, err := s.listContainers(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// StreamContainers sends the ListContainers result one container a message.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	out, err := s.listContainers(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	for _, c := range out {
		if err := stream.Send(&runtimeapi.StreamContainersResponse{Containers: []*runtimeapi.Container{c}}); err != nil {
			return err
		}
	}
	return nil
}

// ExecSync runs a command in a running container and returns its output.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, errdefs.InvalidArgument("exec: command is empty")
	}
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerState(ctx, rec)
	if err != nil {
		return nil, err
	}
	if st.Status != StateRunning {
		return nil, errdefs.FailedPrecondition("exec in container %s: it is %s, not running", rec.ID, st.Status)
	}
	shim, err := s.shims.Connect(ctx, rec.PodID)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", rec.ID, err)
	}
	defer shim.Close()
	stdout, stderr, code, err := shim.ExecSync(ctx, rec.ID, req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", rec.ID, err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}

// ReopenContainerLog has the shim reopen the log file after the kubelet
// rotated it.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	rec, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerState(ctx, rec)
	if err != nil {
		return nil, err
	}
	if st.Status != StateRunning {
		return nil, errdefs.FailedPrecondition("reopen log of container %s: it is %s, not running", rec.ID, st.Status)
	}
	shim, err := s.shims.Connect(ctx, rec.PodID)
	if err != nil {
		return nil, err
	}
	defer shim.Close()
	if err := shim.ReopenLog(ctx, rec.ID); err != nil {
		return nil, fmt.Errorf("reopen log of container %s: %w", rec.ID, err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
