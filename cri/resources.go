package cri

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/cri/spec"
	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/atomicfile"
	"github.com/skiffcri/skiff/internal/statedir"
	"github.com/skiffcri/skiff/meta"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// specFile is the OCI runtime spec Skiff generated for a container, kept
// in its directory for ContainerStatus's verbose info.
const specFile = statedir.SpecFile

// kernelView reads what the kernel applied to a container, where that can
// differ from what the spec asked for. Tests replace it.
type kernelView interface {
	// OOMScoreAdj is the oom_score_adj of host process pid.
	OOMScoreAdj(pid int) (int, error)
	// HugetlbLimited reports whether the cgroup at cgroupPath enforces
	// hugepage limits of pagesize (e.g. "2MB"). The executor skips them
	// when the hugetlb controller is not on the hierarchy it writes.
	HugetlbLimited(cgroupPath, pagesize string) (bool, error)
	// CgroupStats reads the usage counters of the cgroup at cgroupPath;
	// a cgroup that is gone is errdefs.ErrNotFound.
	CgroupStats(cgroupPath string) (*cgroups.Stats, error)
	// ProcessStats counts the processes of the cgroup at cgroupPath and
	// what they hold open; a cgroup that is gone is errdefs.ErrNotFound.
	ProcessStats(cgroupPath string) (*ProcessStats, error)
}

// ProcessStats are what a container's processes hold, as cAdvisor reports
// them.
type ProcessStats struct {
	Processes       uint64
	FileDescriptors uint64
	Sockets         uint64
	// NoFileSoft is the soft open-files limit of the container's first
	// process (its init, the lowest pid); HasNoFile is false when it has
	// none or the limit could not be read.
	NoFileSoft uint64
	HasNoFile  bool
}

// procKernel reads /proc and the cgroup filesystems. The host's cgroup
// layout is read once, when first needed (cgroups.Host): every stats call
// loads a cgroup per container.
type procKernel struct {
	host cgroups.Host
}

// cgroup returns the cgroup at cgroupPath in the host's layout.
func (k *procKernel) cgroup(cgroupPath string) (*cgroups.Manager, error) {
	l, err := k.host.Layout()
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", cgroupPath, err)
	}
	return l.Load(cgroupPath)
}

func (*procKernel) OOMScoreAdj(pid int) (int, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

func (k *procKernel) CgroupStats(cgroupPath string) (*cgroups.Stats, error) {
	cg, err := k.cgroup(cgroupPath)
	if err != nil {
		return nil, err
	}
	return cg.Stats()
}

// ProcessStats lists the cgroup's processes and reads /proc/<pid>/fd of
// each. A process that exits meanwhile is skipped.
func (k *procKernel) ProcessStats(cgroupPath string) (*ProcessStats, error) {
	cg, err := k.cgroup(cgroupPath)
	if err != nil {
		return nil, err
	}
	pids, err := cg.Pids()
	if err != nil {
		return nil, err
	}
	out := &ProcessStats{Processes: uint64(len(pids))}
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		out.FileDescriptors += uint64(len(ents))
		for _, ent := range ents {
			if l, err := os.Readlink(filepath.Join(dir, ent.Name())); err == nil && strings.HasPrefix(l, "socket:") {
				out.Sockets++
			}
		}
	}
	if len(pids) > 0 {
		var lim unix.Rlimit
		if err := unix.Prlimit(slices.Min(pids), unix.RLIMIT_NOFILE, nil, &lim); err == nil && lim.Cur != unix.RLIM_INFINITY {
			out.NoFileSoft, out.HasNoFile = lim.Cur, true
		}
	}
	return out, nil
}

func (k *procKernel) HugetlbLimited(cgroupPath, pagesize string) (bool, error) {
	cg, err := k.cgroup(cgroupPath)
	if err != nil {
		return false, err
	}
	if cg.Mode() != cgroups.Unified {
		return cg.Path("hugetlb") != "", nil
	}
	_, err = os.Stat(filepath.Join(cg.Path(""), "hugetlb."+pagesize+".max"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// criResources turns the resources of an OCI spec into the CRI's form.
func criResources(s *specs.Spec) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if s.Process != nil && s.Process.OOMScoreAdj != nil {
		out.OomScoreAdj = int64(*s.Process.OOMScoreAdj)
	}
	if s.Linux == nil || s.Linux.Resources == nil {
		return out
	}
	r := s.Linux.Resources
	if c := r.CPU; c != nil {
		if c.Period != nil {
			out.CpuPeriod = int64(*c.Period)
		}
		if c.Quota != nil {
			out.CpuQuota = *c.Quota
		}
		if c.Shares != nil {
			out.CpuShares = int64(*c.Shares)
		}
		out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			out.MemoryLimitInBytes = *m.Limit
		}
		if m.Swap != nil {
			out.MemorySwapLimitInBytes = *m.Swap
		}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = make(map[string]string, len(r.Unified))
		for k, v := range r.Unified {
			out.Unified[k] = v
		}
	}
	return out
}

// mergeResources lays the fields an update set over dst, as the cgroup
// write did: fields the update leaves nil keep their value.
func mergeResources(dst, upd *specs.LinuxResources) {
	if c := upd.CPU; c != nil {
		if dst.CPU == nil {
			dst.CPU = &specs.LinuxCPU{}
		}
		d := dst.CPU
		if c.Shares != nil {
			d.Shares = c.Shares
		}
		if c.Quota != nil {
			d.Quota = c.Quota
		}
		if c.Period != nil {
			d.Period = c.Period
		}
		if c.Cpus != "" {
			d.Cpus = c.Cpus
		}
		if c.Mems != "" {
			d.Mems = c.Mems
		}
	}
	if m := upd.Memory; m != nil {
		if dst.Memory == nil {
			dst.Memory = &specs.LinuxMemory{}
		}
		if m.Limit != nil {
			dst.Memory.Limit = m.Limit
		}
		if m.Swap != nil {
			dst.Memory.Swap = m.Swap
		}
	}
	for _, h := range upd.HugepageLimits {
		found := false
		for i := range dst.HugepageLimits {
			if dst.HugepageLimits[i].Pagesize == h.Pagesize {
				dst.HugepageLimits[i].Limit, found = h.Limit, true
			}
		}
		if !found {
			dst.HugepageLimits = append(dst.HugepageLimits, h)
		}
	}
	for k, v := range upd.Unified {
		if dst.Unified == nil {
			dst.Unified = map[string]string{}
		}
		dst.Unified[k] = v
	}
}

// applied corrects what a spec asked for by what the kernel did: the
// oom_score_adj of the container's process (the executor keeps the current
// value when the kernel refuses a lower one) and hugepage limits the cgroup
// does not enforce. What cannot be read is reported as asked, and logged.
func (s *Server) applied(r *runtimeapi.LinuxContainerResources, id string, pid int, cgroupPath string) {
	if pid > 0 {
		if v, err := s.kernel.OOMScoreAdj(pid); err == nil {
			r.OomScoreAdj = int64(v)
		} else {
			s.log.Warn("read applied oom_score_adj", "container", id, "pid", pid, "err", err)
		}
	}
	kept := r.HugepageLimits[:0]
	for _, h := range r.HugepageLimits {
		ok, err := s.kernel.HugetlbLimited(cgroupPath, h.PageSize)
		if err != nil {
			s.log.Warn("check hugetlb controller", "container", id, "cgroup", cgroupPath, "err", err)
			ok = true
		}
		if ok {
			kept = append(kept, h)
		}
	}
	r.HugepageLimits = kept
	if len(kept) == 0 {
		r.HugepageLimits = nil
	}
}

func setResources(rec *meta.Container, r *runtimeapi.LinuxContainerResources) error {
	b, err := protojson.Marshal(&runtimeapi.ContainerResources{Linux: r})
	if err != nil {
		return fmt.Errorf("container %s: encode resources: %w", rec.ID, err)
	}
	rec.Resources = b
	return nil
}

// resourcesOf decodes the record's resources; nil for records written
// before Skiff kept them.
func resourcesOf(rec *meta.Container) (*runtimeapi.ContainerResources, error) {
	if len(rec.Resources) == 0 {
		return nil, nil
	}
	r := &runtimeapi.ContainerResources{}
	if err := protojson.Unmarshal(rec.Resources, r); err != nil {
		return nil, fmt.Errorf("container %s: decode resources: %w", rec.ID, err)
	}
	return r, nil
}

// writeSpec stores the container's OCI spec in its bundle directory,
// replacing any earlier one in one rename.
func writeSpec(rec *meta.Container, s *specs.Spec) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("container %s: encode spec: %w", rec.ID, err)
	}
	if err := os.MkdirAll(rec.Bundle, 0o711); err != nil {
		return fmt.Errorf("container %s: bundle: %w", rec.ID, err)
	}
	path := filepath.Join(rec.Bundle, specFile)
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("container %s: write spec: %w", rec.ID, err)
	}
	return nil
}

// readSpec loads the spec writeSpec stored; ErrNotFound when there is none
// (containers created before Skiff kept it, or after a reboot cleared the
// state directory).
func readSpec(rec *meta.Container) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(rec.Bundle, specFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("OCI spec of container %s", rec.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: read spec: %w", rec.ID, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("container %s: decode spec: %w", rec.ID, err)
	}
	return &s, nil
}

// recordCreated keeps what CreateContainer applied: the spec in the bundle
// and the resources, corrected by what the kernel did, in the record (which
// the caller writes).
func (s *Server) recordCreated(rec *meta.Container, ociSpec *specs.Spec, pid int, cgroupPath string) error {
	if err := writeSpec(rec, ociSpec); err != nil {
		return err
	}
	res := criResources(ociSpec)
	s.applied(res, rec.ID, pid, cgroupPath)
	return setResources(rec, res)
}

// recordUpdate keeps what a successful UpdateContainerResources applied:
// the stored spec's resources and the record's are updated alike. The
// update does not touch oom_score_adj (the cgroup write does not carry
// it), so the applied value stays. The caller holds the container's lock.
func (s *Server) recordUpdate(rec *meta.Container, upd *specs.LinuxResources, cgroupPath string) error {
	old, err := resourcesOf(rec)
	if err != nil {
		return err
	}
	ociSpec, err := readSpec(rec)
	haveSpec := err == nil
	switch {
	case errdefs.IsNotFound(err) && old != nil:
		// Rebuild the resources from the record; spec.Resources accepted
		// them before, so it does again.
		r, err := spec.Resources(old.GetLinux())
		if err != nil {
			return fmt.Errorf("container %s: %w", rec.ID, err)
		}
		ociSpec = &specs.Spec{Linux: &specs.Linux{Resources: r}}
	case errdefs.IsNotFound(err):
		// Nothing known of the resources before: still unknown after.
		return nil
	case err != nil:
		return err
	}
	if ociSpec.Linux == nil {
		ociSpec.Linux = &specs.Linux{}
	}
	if ociSpec.Linux.Resources == nil {
		ociSpec.Linux.Resources = &specs.LinuxResources{}
	}
	mergeResources(ociSpec.Linux.Resources, upd)
	if haveSpec {
		if err := writeSpec(rec, ociSpec); err != nil {
			return err
		}
	}
	res := criResources(ociSpec)
	if old != nil {
		res.OomScoreAdj = old.GetLinux().GetOomScoreAdj()
	}
	s.applied(res, rec.ID, 0, cgroupPath)
	if err := setResources(rec, res); err != nil {
		return err
	}
	return s.meta.PutContainer(rec)
}
