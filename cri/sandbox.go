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

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/phases"
	"github.com/skiffcri/skiff/meta"
)

// Pod states as persisted.
const (
	podReady    = "ready"
	podNotReady = "notready"
)

func (s *Server) podDir(id string) string { return filepath.Join(s.stateDir, "pods", id) }

func validatePodConfig(cfg *runtimeapi.PodSandboxConfig) error {
	m := cfg.GetMetadata()
	if m == nil || m.Name == "" || m.Namespace == "" || m.Uid == "" {
		return errdefs.InvalidArgument("pod sandbox metadata needs name, namespace and uid")
	}
	if err := checkLogDirectory(cfg.GetLogDirectory()); err != nil {
		return err
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return errdefs.InvalidArgument("port mapping %d -> %d is out of range", pm.HostPort, pm.ContainerPort)
		}
	}
	return nil
}

// checkHandler accepts the default runtime handler ("" or RuntimeName) and
// the configured ones, and returns what the handler's pods can have. An
// unknown handler is NotFound, as containerd and CRI-O answer.
func (s *Server) checkHandler(h string) (Features, error) {
	if h == "" || h == RuntimeName {
		return s.features, nil
	}
	for _, rh := range s.handlers {
		if rh.Name == h {
			return rh.Features, nil
		}
	}
	known := []string{RuntimeName}
	for _, rh := range s.handlers {
		known = append(known, rh.Name)
	}
	return Features{}, errdefs.NotFound("runtime handler %q is not configured (known: %q)", h, known)
}

// checkFeatures refuses a pod that needs what its runtime handler cannot
// give, before anything is made for it.
func checkFeatures(cfg *runtimeapi.PodSandboxConfig, handler string, f Features) error {
	// No options means the node's user namespace (a kubelet without
	// user namespace support).
	u := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD && !f.UserNamespaces {
		if handler == "" {
			handler = RuntimeName
		}
		return errdefs.FailedPrecondition("runtime handler %q does not support user namespaces (its features list userNamespaces false)", handler)
	}
	return nil
}

// RunPodSandbox creates a pod's namespaces, files and network and starts its
// shim. Any failure undoes every earlier step.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, retErr error) {
	cfg := req.GetConfig()
	if err := validatePodConfig(cfg); err != nil {
		return nil, err
	}
	features, err := s.checkHandler(req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	if err := checkFeatures(cfg, req.GetRuntimeHandler(), features); err != nil {
		return nil, err
	}
	if s.shims == nil {
		return nil, errdefs.Unimplemented("run pod sandbox: this build has no pod shim yet")
	}
	id := newID()
	name := podName(cfg.GetMetadata())
	if err := s.podNames.reserve(name, id); err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
	}
	unlock := s.locks.lock(id)
	defer unlock()
	st := phases.Start()

	var undo []func()
	defer func() {
		if retErr == nil {
			return
		}
		// Undo with a fresh context: the caller's may be what failed.
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		s.podNames.release(name, id)
	}()

	raw, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode pod config: %w", err)
	}
	sharePID := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_POD
	rec := &meta.Pod{
		ID: id, Name: name, Config: raw, RuntimeHandler: req.GetRuntimeHandler(),
		State: podNotReady, CreatedAt: time.Now(),
		CgroupParent: cfg.GetLinux().GetCgroupParent(),
		Labels:       cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
	}
	if sharePID {
		// The pod init sits where containerd's pause container would: a
		// cgroup named after the pod under its cgroup parent. Recorded
		// from the start, so a crash after the init started still finds it.
		rec.InitCgroup = cgroupPath(cfg, id)
	}
	// The record comes first so that a crash half-way leaves something a
	// restarted daemon can find and clean up.
	if err := s.meta.PutPod(rec); err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
	}
	undo = append(undo, func() { _ = s.meta.DeletePod(id) })

	if err := os.MkdirAll(s.podDir(id), 0o711); err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(s.podDir(id)) })
	st.Done("record")

	ns, files, err := s.podOS.Create(ctx, s.podDir(id), cfg)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
	}
	undo = append(undo, func() {
		if err := s.podOS.Remove(context.Background(), s.podDir(id)); err != nil {
			s.log.Warn("undo pod resources", "pod", id, "err", err)
		}
	})
	rec.Namespaces = meta.PodNamespaces{Net: ns.Net, IPC: ns.IPC, UTS: ns.UTS, User: ns.User}
	rec.Files = meta.PodFiles{Hostname: files.Hostname, Hosts: files.Hosts, ResolvConf: files.ResolvConf, Shm: files.Shm}
	st.Done("namespaces")

	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		if s.network == nil {
			return nil, errdefs.FailedPrecondition("run pod sandbox %s: no pod network is configured", name)
		}
		if err := s.network.Ready(); err != nil {
			return nil, errdefs.FailedPrecondition("run pod sandbox %s: network not ready: %v", name, err)
		}
	}

	// The shim starts while CNI ADD runs: neither needs the other, and
	// each takes tens of milliseconds.
	shimOpts := ShimOptions{SharePID: sharePID, InitCgroup: rec.InitCgroup, UserNS: rec.Namespaces.User, RuntimeHandler: rec.RuntimeHandler}
	type shimStart struct {
		shim Shim
		err  error
		took time.Duration
	}
	started := make(chan shimStart, 1)
	go func() {
		t0 := time.Now()
		sh, err := s.shims.Start(ctx, id, shimOpts)
		started <- shimStart{sh, err, time.Since(t0)}
	}()
	var startedShim *shimStart
	awaitShim := func() shimStart {
		if startedShim == nil {
			r := <-started
			startedShim = &r
		}
		return *startedShim
	}
	undo = append(undo, func() {
		if r := awaitShim(); r.shim != nil {
			_ = r.shim.Close()
			if err := s.shims.Stop(context.Background(), id, shimOpts.InitCgroup); err != nil {
				s.log.Warn("undo pod shim", "pod", id, "err", err)
			}
		}
	})

	if !hostNet {
		nreq := s.netRequest(rec, cfg)
		// Record the intent before ADD: a crash mid-ADD must still lead to a DEL.
		rec.NetworkSetUp = true
		if err := s.meta.PutPod(rec); err != nil {
			return nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
		}
		ips, err := s.network.Setup(ctx, nreq)
		if err != nil {
			return nil, fmt.Errorf("run pod sandbox %s: network: %w", name, err)
		}
		undo = append(undo, func() {
			if err := s.network.Teardown(context.Background(), nreq); err != nil {
				s.log.Warn("undo pod network", "pod", id, "err", err)
			}
		})
		rec.IPs = ips
		if err := s.podOS.SetHosts(s.podDir(id), false, ips, cfg.GetHostname()); err != nil {
			return nil, fmt.Errorf("run pod sandbox %s: hosts file: %w", name, err)
		}
	}
	st.Done("network")

	r := awaitShim()
	if r.err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: start shim: %w", name, r.err)
	}
	st.Took("shim_start", r.took)
	st.Done("shim_wait")
	shim := r.shim
	if sharePID {
		path, err := s.podOS.PinPID(s.podDir(id), shim.InitPID())
		if err != nil {
			_ = shim.Close()
			return nil, fmt.Errorf("run pod sandbox %s: pin PID namespace: %w", name, err)
		}
		rec.Namespaces.PID = path
	}
	shimPid := shim.Pid()
	_ = shim.Close()

	rec.State = podReady
	if err := s.meta.PutPod(rec); err != nil {
		return nil, fmt.Errorf("run pod sandbox %s: %w", name, err)
	}
	s.watchShim(id, shimPid)
	// As containerd does, a pod's own transitions are events too, with
	// the pod's ID as the container ID.
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, id, id)
	s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, id, id)
	st.Done("ready")
	st.Log(ctx, s.log, "rpc steps", slog.String("rpc", "RunPodSandbox"), slog.String("id", id))
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *Server) netRequest(rec *meta.Pod, cfg *runtimeapi.PodSandboxConfig) PodNetworkRequest {
	req := PodNetworkRequest{
		PodID: rec.ID, NetNS: rec.Namespaces.Net,
		Name: cfg.GetMetadata().GetName(), Namespace: cfg.GetMetadata().GetNamespace(), UID: cfg.GetMetadata().GetUid(),
		PortMappings: cfg.GetPortMappings(), DNS: cfg.GetDnsConfig(),
		Annotations: cfg.GetAnnotations(), Labels: cfg.GetLabels(),
		CgroupParent: cfg.GetLinux().GetCgroupParent(),
	}
	if c := s.podCIDRs.Load(); c != nil {
		req.PodCIDRs = *c
	}
	return req
}

func podConfig(rec *meta.Pod) (*runtimeapi.PodSandboxConfig, error) {
	cfg := &runtimeapi.PodSandboxConfig{}
	if err := protojson.Unmarshal(rec.Config, cfg); err != nil {
		return nil, fmt.Errorf("pod %s: decode config: %w", rec.ID, err)
	}
	return cfg, nil
}

// findPod resolves a full ID or a unique prefix, as crictl users type them.
func (s *Server) findPod(id string) (*meta.Pod, error) {
	return findByID("pod sandbox", id, s.meta.Pod, s.meta.Pods, func(p *meta.Pod) string { return p.ID })
}

// StopPodSandbox stops every container of the pod and detaches it from the
// network. It is idempotent and succeeds for pods already removed.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	rec, err := s.findPod(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopPod(ctx, rec); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *Server) stopPod(ctx context.Context, rec *meta.Pod) error {
	st := phases.Start()
	ctrs, err := s.podContainers(rec.ID)
	if err != nil {
		return err
	}
	for _, c := range ctrs {
		if err := s.stopContainer(ctx, c, 0); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stop pod sandbox %s: %w", rec.ID, err)
		}
	}
	st.Done("containers")
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	rec, err = s.meta.Pod(rec.ID)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	// The network's teardown (CNI DEL, several plugin execs) and the
	// shim's going away do not depend on each other: they run at once.
	netDone := make(chan error, 1)
	var netTook time.Duration
	tearDown := rec.NetworkSetUp && s.network != nil
	if tearDown {
		cfg, err := podConfig(rec)
		if err != nil {
			return err
		}
		req := s.netRequest(rec, cfg)
		go func() {
			t0 := time.Now()
			err := s.network.Teardown(ctx, req)
			netTook = time.Since(t0)
			netDone <- err
		}()
	} else {
		netDone <- nil
	}
	shimErr := s.stopPodShim(ctx, rec, ctrs)
	st.Done("shim_stop")
	err = <-netDone
	st.Took("network_teardown", netTook)
	st.Done("network_wait")
	if err != nil {
		return fmt.Errorf("stop pod sandbox %s: network: %w", rec.ID, err)
	}
	if tearDown {
		rec.NetworkSetUp = false
	}
	if shimErr != nil {
		// A retry runs CNI DEL again, which CNI makes idempotent.
		return shimErr
	}
	wasReady := rec.State == podReady
	rec.State = podNotReady
	if err := s.meta.PutPod(rec); err != nil {
		return err
	}
	if wasReady {
		s.publish(ctx, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, rec.ID, rec.ID)
		// The phases of the stop that did the work, not of the repeats
		// (RemovePodSandbox stops the pod again).
		st.Done("recorded")
		st.Log(ctx, s.log, "rpc steps", slog.String("rpc", "StopPodSandbox"), slog.String("id", rec.ID))
	}
	return nil
}

// stopPodShim stops the pod's shim: first it lets it release every
// container's executor state and cgroup (their exit records stay on
// disk), then it stops it and has the runtime drop what it still holds.
func (s *Server) stopPodShim(ctx context.Context, rec *meta.Pod, ctrs []*meta.Container) error {
	if shim, err := s.shims.Connect(ctx, rec.ID); err == nil {
		for _, c := range ctrs {
			if err := shim.Delete(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
				_ = shim.Close()
				return fmt.Errorf("stop pod sandbox %s: delete container %s: %w", rec.ID, c.ID, err)
			}
		}
		_ = shim.Close()
	}
	if err := s.shims.Stop(ctx, rec.ID, rec.InitCgroup); err != nil {
		return fmt.Errorf("stop pod sandbox %s: shim: %w", rec.ID, err)
	}
	for _, c := range ctrs {
		if err := s.shims.Cleanup(ctx, c.ID); err != nil {
			return fmt.Errorf("stop pod sandbox %s: %w", rec.ID, err)
		}
	}
	return nil
}

// RemovePodSandbox stops the pod if needed, removes its containers and frees
// everything it held. Removing a pod that does not exist succeeds.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	rec, err := s.findPod(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopPod(ctx, rec); err != nil {
		return nil, err
	}
	ctrs, err := s.podContainers(rec.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range ctrs {
		if err := s.removeContainer(ctx, c); err != nil {
			return nil, fmt.Errorf("remove pod sandbox %s: %w", rec.ID, err)
		}
	}
	unlock := s.locks.lock(rec.ID)
	defer unlock()
	// The pod's last status goes with its DELETED event; a pod whose
	// record cannot give one is removed all the same.
	last := &runtimeapi.PodSandboxStatus{Id: rec.ID}
	resp, err := s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: rec.ID})
	switch {
	case errdefs.IsNotFound(err):
		// A racing RemovePodSandbox removed it (and published DELETED)
		// while this one waited for the lock.
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	case err != nil:
		s.log.Warn("pod sandbox DELETED event without the pod's status", "pod", rec.ID, "err", err)
	default:
		last = resp.GetStatus()
	}
	if err := s.podOS.Remove(ctx, s.podDir(rec.ID)); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", rec.ID, err)
	}
	if err := os.RemoveAll(s.podDir(rec.ID)); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", rec.ID, err)
	}
	if err := s.meta.DeletePod(rec.ID); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	s.podNames.release(rec.Name, rec.ID)
	s.podCPU.forget(rec.ID)
	s.publishSandbox(ctx, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, last)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (s *Server) podSandbox(rec *meta.Pod) (*runtimeapi.PodSandbox, *runtimeapi.PodSandboxConfig, error) {
	cfg, err := podConfig(rec)
	if err != nil {
		return nil, nil, err
	}
	state := runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	if rec.State == podReady {
		state = runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return &runtimeapi.PodSandbox{
		Id: rec.ID, Metadata: cfg.GetMetadata(), State: state,
		CreatedAt: rec.CreatedAt.UnixNano(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		RuntimeHandler: rec.RuntimeHandler,
	}, cfg, nil
}

func (s *Server) listPods(f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	recs, err := s.meta.Pods()
	if err != nil {
		return nil, fmt.Errorf("list pod sandboxes: %w", err)
	}
	var out []*runtimeapi.PodSandbox
	for _, rec := range recs {
		if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
			continue
		}
		sb, _, err := s.podSandbox(rec)
		if err != nil {
			s.log.Warn("skip unreadable pod record", "pod", rec.ID, "err", err)
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != sb.State {
			continue
		}
		if !matchLabels(f.GetLabelSelector(), sb.Labels) {
			continue
		}
		out = append(out, sb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

// ListPodSandbox lists pods matching the filter's ID prefix, state and labels.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	items, err := s.listPods(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// StreamPodSandboxes sends the ListPodSandbox result one pod a message.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	items, err := s.listPods(req.GetFilter())
	if err != nil {
		return err
	}
	for _, sb := range items {
		if err := stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: []*runtimeapi.PodSandbox{sb}}); err != nil {
			return err
		}
	}
	return nil
}

var errPodNotReady = errors.New("pod sandbox is not ready")
