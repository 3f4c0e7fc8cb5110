package cni_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/skiffcri/skiff/cni"
)

// The CRI layer's use: one Manager per daemon; Ready backs the NetworkReady
// condition; Setup in RunPodSandbox (after the netns exists), Teardown in
// StopPodSandbox and RemovePodSandbox (before the netns is removed), GC after
// a restart with the IDs of the pods that still exist.
func Example() {
	ctx := context.Background()
	m, err := cni.New(ctx, cni.Options{
		ConfDir:  cni.DefaultConfDir,
		BinDirs:  cni.DefaultBinDirs,
		CacheDir: "/var/lib/skiff/cni",
		Log:      slog.Default(),
	})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.Ready(); err != nil {
		fmt.Println("network not ready:", err)
		return
	}
	req := cni.SetupRequest{
		PodID: "0123abcd", NetNS: "/run/skiff/ns/0123abcd/net",
		PodName: "web", PodNamespace: "default", PodUID: "4f1c...",
		PortMappings: []cni.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"}},
	}
	res, err := m.Setup(ctx, req) // on error nothing is left attached
	if err != nil {
		panic(err)
	}
	fmt.Println("pod IPs:", res.PodIPs) // primary first
	if err := m.Teardown(ctx, req); err != nil {
		panic(err)
	}
}
