package cgroups_test

import (
	"context"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/oci/cgroups"
)

// A container's life in its cgroup: create with limits, add the init
// process, read stats, kill everything and remove it. (Not run as a test:
// it needs root and a real cgroupfs.)
func Example() {
	ctx := context.Background()
	m, err := cgroups.New("/kubepods/pod1234/ctr5678")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	limit := int64(64 << 20)
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	_ = m.Apply(os.Getpid())
	if st, err := m.Stats(); err == nil {
		fmt.Println("working set:", st.Memory.WorkingSet, "OOM kills:", st.Memory.OOMKills)
	}
	_ = m.KillAll(ctx, unix.SIGKILL)
	_ = m.Destroy(ctx)
}
