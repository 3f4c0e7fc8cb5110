package daemon

import (
	"context"
	"fmt"
	"sync"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// containerCgroups is what both Runtimes do with cgroups from the shim's
// side, whoever made them: read a container's OOM kills from its memory
// cgroup, and place the pod init in the pod's cgroup. Both the executor and
// an OCI runtime CLI on the cgroupfs driver put a container at the spec's
// cgroupsPath in every hierarchy, so one reader serves both.
type containerCgroups struct {
	host cgroups.Host
	mu   sync.Mutex
	// paths remembers each container's cgroups path for the OOM check.
	paths map[string]string
}

func (c *containerCgroups) load(path string) (*cgroups.Manager, error) {
	l, err := c.host.Layout()
	if err != nil {
		return nil, err
	}
	return l.Load(path)
}

func (c *containerCgroups) remember(id, path string) {
	if path == "" {
		return
	}
	c.mu.Lock()
	if c.paths == nil {
		c.paths = make(map[string]string)
	}
	c.paths[id] = path
	c.mu.Unlock()
}

func (c *containerCgroups) forget(id string) {
	c.mu.Lock()
	delete(c.paths, id)
	c.mu.Unlock()
}

// OOMKilled implements OOMChecker from the memory cgroup's oom_kill count.
func (c *containerCgroups) OOMKilled(ctx context.Context, id string) (bool, error) {
	c.mu.Lock()
	path := c.paths[id]
	c.mu.Unlock()
	if path == "" {
		return false, nil
	}
	m, err := c.load(path)
	if err != nil {
		return false, err
	}
	n, err := m.OOMKillCount()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

// JoinPodCgroup implements PodCgroups: path is created if the kubelet has
// not made it (crictl, tests).
func (c *containerCgroups) JoinPodCgroup(path string, pid int) error {
	l, err := c.host.Layout()
	if err != nil {
		return fmt.Errorf("pod cgroup %s: %w", path, err)
	}
	m, err := l.New(path)
	if err != nil {
		return fmt.Errorf("pod cgroup %s: %w", path, err)
	}
	if err := m.Apply(pid); err != nil {
		return fmt.Errorf("pod cgroup %s: %w", path, err)
	}
	return nil
}

// RemovePodCgroup implements PodCgroups.
func (c *containerCgroups) RemovePodCgroup(ctx context.Context, path string) error {
	m, err := c.load(path)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.Destroy(ctx)
}
