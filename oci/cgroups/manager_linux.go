package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
)

// DetectLayout reads the cgroup mounts of the calling process.
func DetectLayout() (*Layout, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	return LayoutFromMounts(mounts)
}

func readMounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// Host is the host's cgroup mounts as a long-lived process sees them: read
// from mountinfo when first needed, then kept, since the hierarchies do not
// move while mountinfo grows with every pod's mounts (with 600 mounts,
// reading it takes a cold process 1.7 ms on a 2-core machine). A failed
// read is not kept. The zero value is ready; a Host must not be copied.
type Host struct {
	mu     sync.Mutex
	mounts []Mount
	layout *Layout
}

func (h *Host) read() ([]Mount, *Layout, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.layout == nil {
		mounts, err := readMounts()
		if err != nil {
			return nil, nil, err
		}
		l, err := LayoutFromMounts(mounts)
		if err != nil {
			return nil, nil, err
		}
		h.mounts, h.layout = mounts, l
	}
	return h.mounts, h.layout, nil
}

// Mounts returns the cgroup and cgroup2 mounts (ParseMountInfo), which the
// caller must not change.
func (h *Host) Mounts() ([]Mount, error) {
	m, _, err := h.read()
	return m, err
}

// Layout returns the layout of the mounts.
func (h *Host) Layout() (*Layout, error) {
	_, l, err := h.read()
	return l, err
}

// Manager is one cgroup, identified by the same path in every hierarchy.
// It holds no open files, so a restarted daemon rebuilds it with Load.
type Manager struct {
	layout *Layout
	path   string
	// v1 maps controller -> directory of this cgroup (empty in Unified
	// mode). Co-mounted controllers map to the same directory.
	v1 map[string]string
	// unified is this cgroup's directory in the cgroup2 hierarchy: the
	// resource hierarchy in Unified mode, membership only in Hybrid mode.
	unified string
}

// New creates the cgroup at path (e.g. "/kubepods/pod123/ctr456", relative
// to each hierarchy's root) in every hierarchy using the host's layout. A
// systemd-style "slice:prefix:name" path is expanded with SystemdPath.
func New(path string) (*Manager, error) {
	l, err := DetectLayout()
	if err != nil {
		return nil, err
	}
	return l.New(path)
}

// Load returns a Manager for an existing cgroup, for a daemon that restarted.
func Load(path string) (*Manager, error) {
	l, err := DetectLayout()
	if err != nil {
		return nil, err
	}
	return l.Load(path)
}

func cleanPath(p string) (string, error) {
	p, err := SystemdPath(p)
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", errdefs.InvalidArgument("empty cgroup path")
	}
	for part := range strings.SplitSeq(p, "/") {
		if part == ".." {
			return "", errdefs.InvalidArgument("cgroup path %q: must not contain ..", p)
		}
	}
	c := filepath.Clean("/" + p)
	if c == "/" {
		return "", errdefs.InvalidArgument("cgroup path %q: the root cgroup cannot be managed", p)
	}
	return c, nil
}

func (l *Layout) manager(path string) (*Manager, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	m := &Manager{layout: l, path: p, v1: map[string]string{}}
	if l.Mode != Unified {
		for c, mnt := range l.V1 {
			m.v1[c] = filepath.Join(mnt, p)
		}
	}
	if l.Unified != "" {
		m.unified = filepath.Join(l.Unified, p)
	}
	return m, nil
}

// dirs returns every distinct directory of the cgroup, v1 first, sorted so
// the order of operations is stable.
func (m *Manager) dirs() []string {
	var ds []string
	for _, d := range m.v1 {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	ds = slices.Compact(ds)
	if m.unified != "" {
		ds = append(ds, m.unified)
	}
	return ds
}

// New creates the cgroup at path in the layout's hierarchies. On failure
// the directories it made are removed again.
func (l *Layout) New(path string) (_ *Manager, retErr error) {
	m, err := l.manager(path)
	if err != nil {
		return nil, err
	}
	var created []string
	defer func() {
		if retErr != nil {
			for _, d := range slices.Backward(created) {
				_ = l.fsys().rmdir(d)
			}
		}
	}()
	for _, d := range m.dirs() {
		mnt := l.Unified
		if d != m.unified {
			mnt = strings.TrimSuffix(d, m.path)
		}
		made, err := l.mkdirLevels(mnt, m.path)
		created = append(created, made...)
		if err != nil {
			return nil, err
		}
	}
	if cs, ok := m.v1["cpuset"]; ok {
		if err := l.initCpuset(strings.TrimSuffix(cs, m.path), m.path); err != nil {
			return nil, err
		}
	}
	if l.Mode == Unified {
		if err := l.enableControllers(m.path); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Load returns a Manager for a cgroup that already exists in at least one
// hierarchy.
func (l *Layout) Load(path string) (*Manager, error) {
	m, err := l.manager(path)
	if err != nil {
		return nil, err
	}
	for _, d := range m.dirs() {
		if _, err := os.Stat(d); err == nil {
			return m, nil
		}
	}
	return nil, errdefs.NotFound("cgroup %q", m.path)
}

// mkdirLevels creates mnt+path one level at a time and returns the
// directories it created, parents first.
func (l *Layout) mkdirLevels(mnt, path string) ([]string, error) {
	var made []string
	cur := mnt
	for part := range strings.SplitSeq(strings.Trim(path, "/"), "/") {
		cur = filepath.Join(cur, part)
		err := l.fsys().mkdir(cur)
		switch {
		case err == nil:
			made = append(made, cur)
		case errors.Is(err, unix.EEXIST):
		default:
			return made, err
		}
	}
	return made, nil
}

// fsys is the cgroup filesystem the layout's hierarchies live on.
func (l *Layout) fsys() cgroupFS {
	if l.fs == nil {
		return kernelFS{}
	}
	return l.fs
}

func (l *Layout) read(path string) (string, error) { return l.fsys().readFile(path) }

// write stores one value in a cgroup file.
func (l *Layout) write(path, value string) error { return l.fsys().writeFile(path, value) }

// has reports whether a cgroup interface file exists.
func (l *Layout) has(path string) bool { return l.fsys().exists(path) }

// Path returns the directory of the cgroup for a v1 controller, or in
// Unified mode the one directory for any controller. The empty controller
// names the cgroup2 directory in every mode. "" means not present.
func (m *Manager) Path(controller string) string {
	if controller == "" || m.layout.Mode == Unified {
		return m.unified
	}
	return m.v1[controller]
}

// CgroupPath returns the cleaned path inside each hierarchy.
func (m *Manager) CgroupPath() string { return m.path }

// Mode returns the host layout the Manager writes for.
func (m *Manager) Mode() Mode { return m.layout.Mode }

// Apply moves process pid (all its threads) into the cgroup in every
// hierarchy.
func (m *Manager) Apply(pid int) error {
	if pid <= 0 {
		return errdefs.InvalidArgument("cgroup %q: pid %d", m.path, pid)
	}
	for _, d := range m.dirs() {
		if err := m.layout.write(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup %q: add pid %d: %w", m.path, pid, err)
		}
	}
	return nil
}

// OpenCloneTarget opens the cgroup's cgroup2 directory, for a process to
// be cloned straight into it (clone3 with CLONE_INTO_CGROUP): the kernel
// then places the child at fork, with no migration. A cgroup.procs write
// migrates, which takes the kernel's cgroup_threadgroup_rwsem for writing;
// the first such write after a quiet spell waits for an RCU grace period
// (10-15 ms on the development host). It returns nil when the layout has no
// cgroup2 hierarchy. The caller closes the directory.
func (m *Manager) OpenCloneTarget() (*os.File, error) {
	if m.unified == "" {
		return nil, nil
	}
	f, err := os.OpenFile(m.unified, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroup %q: %w", m.path, err)
	}
	return f, nil
}

// OpenTaskFiles opens for writing the "tasks" file of the cgroup in each
// v1 hierarchy (none on a cgroup v2 host). A thread that writes "0" to one
// moves itself, and only itself, into that hierarchy's cgroup, which the
// kernel does without taking cgroup_threadgroup_rwsem for writing: no
// grace-period wait (0.3 ms for eight hierarchies on the development
// host, where cgroup.procs writes of another pid take 3-20 ms). The
// kernel checks the permission with the credentials of the opener, so a
// container's init in a user namespace may write through them. The
// caller closes the files.
func (m *Manager) OpenTaskFiles() ([]*os.File, error) {
	var files []*os.File
	for _, d := range m.dirs() {
		if d == m.unified {
			continue
		}
		f, err := m.layout.fsys().openWrite(filepath.Join(d, "tasks"))
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cgroup %q: %w", m.path, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// ApplyV1 moves process pid into the cgroup's v1 hierarchies only (none on
// a cgroup v2 host).
func (m *Manager) ApplyV1(pid int) error {
	return m.apply(pid, false)
}

// ApplyUnified moves process pid into the cgroup's cgroup2 directory only.
func (m *Manager) ApplyUnified(pid int) error {
	return m.apply(pid, true)
}

func (m *Manager) apply(pid int, unified bool) error {
	if pid <= 0 {
		return errdefs.InvalidArgument("cgroup %q: pid %d", m.path, pid)
	}
	for _, d := range m.dirs() {
		if (d == m.unified) != unified {
			continue
		}
		if err := m.layout.write(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup %q: add pid %d: %w", m.path, pid, err)
		}
	}
	return nil
}

// Pids lists every process in the cgroup and its descendants.
func (m *Manager) Pids() ([]int, error) {
	root := m.procsDir()
	if root == "" {
		return nil, errdefs.FailedPrecondition("cgroup %q: no hierarchy to list processes from", m.path)
	}
	var pids []int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		for f := range strings.FieldsSeq(string(data)) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s/cgroup.procs: %q: %w", p, f, err)
			}
			pids = append(pids, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cgroup %q: list pids: %w", m.path, err)
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// procsDir is the hierarchy whose membership is authoritative for listing.
func (m *Manager) procsDir() string {
	if m.layout.Mode == Unified {
		return m.unified
	}
	for _, c := range []string{"pids", "freezer", "memory", "cpu", "cpuacct", "devices"} {
		if d, ok := m.v1[c]; ok {
			return d
		}
	}
	return m.unified
}

// pollInterval is how often Freeze and Destroy look again; the kernel gives
// no cheap notification for the v1 freezer.
const pollInterval = 2 * time.Millisecond

// Freeze stops every process in the cgroup and waits until the kernel
// reports the cgroup frozen. On cancellation the cgroup is thawed again.
func (m *Manager) Freeze(ctx context.Context) error {
	if d, ok := m.v1["freezer"]; ok && m.layout.Mode != Unified {
		return m.freezeV1(ctx, d)
	}
	if m.unified != "" && m.layout.has(filepath.Join(m.unified, "cgroup.freeze")) {
		return m.freezeV2(ctx, m.unified)
	}
	return errdefs.FailedPrecondition("cgroup %q: no freezer", m.path)
}

// Thaw resumes the processes of a frozen cgroup.
func (m *Manager) Thaw() error {
	var err error
	if d, ok := m.v1["freezer"]; ok && m.layout.Mode != Unified {
		err = m.layout.write(filepath.Join(d, "freezer.state"), "THAWED")
	} else if m.unified != "" && m.layout.has(filepath.Join(m.unified, "cgroup.freeze")) {
		err = m.layout.write(filepath.Join(m.unified, "cgroup.freeze"), "0")
	} else {
		return errdefs.FailedPrecondition("cgroup %q: no freezer", m.path)
	}
	if err != nil {
		return fmt.Errorf("cgroup %q: thaw: %w", m.path, err)
	}
	return nil
}

// KillAll sends sig to every process in the cgroup and its descendants.
// For SIGKILL it uses cgroup.kill where the kernel has it (5.14+), which
// cannot race with forks. Otherwise the cgroup is frozen so no process can
// fork a new one between listing and signalling, then thawed so the signals
// are delivered. It does not wait for the processes to exit.
func (m *Manager) KillAll(ctx context.Context, sig unix.Signal) error {
	if sig == unix.SIGKILL && m.unified != "" && m.layout.has(filepath.Join(m.unified, "cgroup.kill")) {
		if err := m.layout.write(filepath.Join(m.unified, "cgroup.kill"), "1"); err != nil {
			return fmt.Errorf("cgroup %q: kill: %w", m.path, err)
		}
		if m.layout.Mode == Unified {
			return nil
		}
		// Hybrid: a process placed only in the v1 hierarchies by someone
		// else escapes cgroup.kill; sweep v1 as well.
	}
	frozen := m.Freeze(ctx) == nil
	pids, err := m.Pids()
	if err == nil {
		for _, pid := range pids {
			if kerr := unix.Kill(pid, sig); kerr != nil && !errors.Is(kerr, unix.ESRCH) {
				err = errors.Join(err, fmt.Errorf("cgroup %q: kill pid %d: %w", m.path, pid, kerr))
			}
		}
	}
	if frozen {
		if terr := m.Thaw(); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	return err
}

// OOMKillCount returns how many processes the kernel OOM killer killed in
// the cgroup (and, on v2, its descendants) since it was created.
func (m *Manager) OOMKillCount() (uint64, error) {
	var file, key string
	switch {
	case m.layout.Mode == Unified:
		file, key = filepath.Join(m.unified, "memory.events"), "oom_kill"
	case m.v1["memory"] != "":
		file, key = filepath.Join(m.v1["memory"], "memory.oom_control"), "oom_kill"
	default:
		return 0, errdefs.FailedPrecondition("cgroup %q: no memory controller", m.path)
	}
	data, err := m.layout.read(file)
	if err != nil {
		return 0, fmt.Errorf("cgroup %q: %w", m.path, err)
	}
	kv, err := ParseFlatKeyed(data)
	if err != nil {
		return 0, fmt.Errorf("cgroup %q: %s: %w", m.path, file, err)
	}
	return kv[key], nil
}

// Destroy removes the cgroup and any child cgroups from every hierarchy,
// deepest first. The processes must be gone: the kernel keeps a cgroup busy
// (EBUSY) for a short while after its last task exited, so removal is
// retried until ctx ends. A cgroup that does not exist is not an error.
func (m *Manager) Destroy(ctx context.Context) error {
	var errs []error
	for _, d := range m.dirs() {
		if err := m.layout.fsys().removeTree(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cgroup %q: destroy: %w", m.path, err)
	}
	return nil
}

func rmdirRetry(ctx context.Context, d string) error {
	delay := time.Millisecond
	for {
		err := unix.Rmdir(d)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EAGAIN) {
			return &os.PathError{Op: "rmdir", Path: d, Err: err}
		}
		if serr := sleep(ctx, delay); serr != nil {
			return &os.PathError{Op: "rmdir", Path: d, Err: fmt.Errorf("%w (gave up: %w)", err, serr)}
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
