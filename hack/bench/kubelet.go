package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"
)

// "bench kubelet" is the kubelet-level figure of issue 11: pods static pods
// of one container written at qps a second into the manifest directory of
// the standalone kubelet that hack/node-e2e.sh builds, as clusterloader2's
// node-throughput test creates them, and the p50/p99 startup latency from
// manifest written to pod Running, for each runtime. A SKETCH: -dry-run
// prints what it would write; the run itself is not written yet.
//
// The run, per runtime, one at a time (the kubelet owns host state: cgroups
// under its cgroup root, sysctls it sets at start, as hack/node-e2e.sh
// saves and restores them):
//
//  1. newEnv as for "pods" (same registry, conflist, cgroupfs); pull the
//     pause and busybox images through the CRI first, so no latency holds a
//     pull.
//  2. Refuse to start when another kubelet runs (hack/node-e2e.sh of another
//     engineer): the kubelet's ports and sysctls are the machine's.
//  3. Start the kubelet with kubeletConfig below: --root-dir and podLogsDir
//     in the temp dir (not /var/lib/kubelet, /var/log/pods), cgroupRoot the
//     env's cgroup parent, no API server, the read-only port on loopback to
//     read pod status (GET /pods).
//  4. Write pod i's manifest (staticPodManifest) at start + i/qps; poll /pods
//     every 100 ms and note, per pod, the first poll that shows phase
//     Running with every container running. Latency = that time - written.
//     The CRI container's StartedAt is logged beside it (a lower bound that
//     does not depend on the poll period).
//  5. Remove the manifests, wait until the runtime lists no pod, stop the
//     kubelet, restore the sysctls, remove its cgroups and mounts, then
//     env.close (which fails the run on anything left).
//  6. Rows: "kubelet: N static pods at Q/s, startup p50" and "p99", seconds,
//     and "all Running" wall time; target p99 ≤ 2 s (issue 11).
func benchKubelet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kubelet", flag.ExitOnError)
	pods := fs.Int("pods", 100, "static pods to create")
	qps := fs.Float64("qps", 5, "manifests written per second")
	kubelet := fs.String("kubelet", filepath.Join(toolsDir(), "node-e2e-v1.37.2", "kubelet"), "standalone kubelet (hack/node-e2e.sh builds it)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for every pod to run")
	dryRun := fs.Bool("dry-run", false, "print the kubelet config and the first manifest, run nothing")
	_ = fs.String("md", "", "also write the Markdown table to this file")
	_ = fs.Parse(args)
	if *pods < 1 || *qps <= 0 {
		return errors.New("kubelet: -pods must be at least 1 and -qps positive")
	}
	if *dryRun {
		fmt.Printf("# %s --config kubelet.yaml --container-runtime-endpoint unix://SOCK --root-dir TMP/kubelet\n", *kubelet)
		fmt.Print(kubeletConfig("TMP/manifests", "TMP/pod-logs", "/skiff-bench-XXXX"))
		fmt.Printf("---\n# manifest 0 of %d, one every %v, all Running expected within %v\n", *pods, time.Duration(float64(time.Second) / *qps), *timeout)
		fmt.Print(staticPodManifest(0))
		return nil
	}
	_ = ctx
	return errors.New("kubelet: not written yet, only sketched (see hack/bench/kubelet.go); -dry-run prints its config")
}

// kubeletConfig is the standalone kubelet's configuration: hack/node-e2e.sh's
// base (cgroup v1 without systemd), with every path in the benchmark's
// temp dir and the read-only port on loopback for pod status.
func kubeletConfig(manifests, podLogs, cgroupRoot string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %q
podLogsDir: %q
cgroupDriver: cgroupfs
cgroupRoot: %q
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
readOnlyPort: 10255
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podCIDR: "10.214.0.0/16"
serializeImagePulls: false
maxPods: 250
evictionHard:
  memory.available: 100Mi
`, manifests, podLogs, cgroupRoot)
}

// staticPodManifest is pod i: one busybox container sleeping, the image
// already pulled.
func staticPodManifest(i int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: bench-%d
  namespace: bench
spec:
  containers:
  - name: sleep
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
  terminationGracePeriodSeconds: 0
`, i, podImage)
}
