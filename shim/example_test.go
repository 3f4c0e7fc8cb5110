package shim_test

import (
	"context"
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/shim"
)

// A daemon starts a pod's shim, runs a container in it, and later, after a
// restart, reconnects and stops it.
func Example() {
	ctx := context.Background()
	c, err := shim.Start(ctx, shim.StartOptions{
		Binary: "/usr/local/bin/skiff-shim",
		Dir:    "/run/skiff/shims/pod1",
		PodID:  "pod1",
		Args:   []string{"--runtime-root", "/run/skiff/oci"},
	})
	if err != nil {
		panic(err)
	}
	var spec *specs.Spec // built from the CRI ContainerConfig
	if _, err := c.CreateContainer(ctx, shim.CreateRequest{
		ID: "ctr1", Spec: spec, Rootfs: "/run/skiff/containers/ctr1/rootfs",
		LogPath:  "/var/log/pods/ns_pod_uid/app/0.log",
		StateDir: "/run/skiff/containers/ctr1",
	}); err != nil {
		panic(err)
	}
	if _, err := c.StartContainer(ctx, "ctr1"); err != nil {
		panic(err)
	}

	// ... skiffd is killed and restarts ...
	c, err = shim.Connect(ctx, "/run/skiff/shims/pod1")
	if err != nil {
		// The shim is gone too: the exit record still tells the outcome.
		rec, _ := shim.ReadExitFile("/run/skiff/containers/ctr1")
		fmt.Println("exit code", rec.ExitCode)
		return
	}
	c.KillContainer(ctx, "ctr1", syscall.SIGTERM, false)
	st, _ := c.Wait(ctx, "ctr1")
	fmt.Println("exit code", st.ExitCode, st.Reason)
	c.DeleteContainer(ctx, "ctr1")
	c.Shutdown(ctx)
}
