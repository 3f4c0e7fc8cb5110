package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// "bench kubelet" is the kubelet-level figure of issue 11: static pods of
// one container written at qps a second into the manifest directory of the
// standalone kubelet that hack/node-e2e.sh builds, as clusterloader2's
// node-throughput test creates them, and the p50/p99 startup latency from
// manifest written to pod Running, for each runtime.
//
// Per runtime, one at a time (the kubelet owns host state: its ports,
// sysctls it sets at start, cgroups under its cgroup root), the kubelet runs
// with every path in the benchmark's temp dir, cgroupRoot the env's cgroup
// parent, no API server, and the read-only port on loopback: a poll of GET
// /pods every 100 ms notes, per pod, the first poll that shows it Running
// with every container running. Latency = that time - manifest written.
// Then the manifests go, the kubelet stops its pods, and env.close checks
// that nothing is left.
//
// "bench kubelet-stats" is not a benchmark: one static pod whose container
// holds 64 MiB in /dev/shm, and what the kubelet's /stats/summary and
// /metrics/cadvisor say of it, per runtime, with the feature gates given
// (PodAndContainerStatsFromCRI=true reads both from the CRI).
func benchKubelet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kubelet", flag.ExitOnError)
	pods := fs.Int("pods", 100, "static pods to create")
	qps := fs.Float64("qps", 5, "manifests written per second")
	kubelet := fs.String("kubelet", defaultKubelet(), "standalone kubelet (hack/node-e2e.sh builds it)")
	gates := fs.String("feature-gates", "", "kubelet feature gates, Name=true,Other=false")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for every pod to run")
	only := fs.String("runtime", "", "measure only this runtime (Skiff or containerd)")
	dryRun := fs.Bool("dry-run", false, "print the kubelet config and the first manifest, run nothing")
	md := fs.String("md", "", "also write the Markdown table to this file")
	_ = fs.Parse(args)
	if *pods < 1 || *qps <= 0 {
		return errors.New("kubelet: -pods must be at least 1 and -qps positive")
	}
	gateMap, err := parseGates(*gates)
	if err != nil {
		return err
	}
	if *dryRun {
		fmt.Printf("# %s --config kubelet.yaml --container-runtime-endpoint unix://SOCK --root-dir TMP/kubelet\n", *kubelet)
		fmt.Print(kubeletConfig("TMP/manifests", "TMP/pod-logs", "/skiff-bench-XXXX", gateMap))
		fmt.Printf("---\n# manifest 0 of %d, one every %v, all Running expected within %v\n", *pods, time.Duration(float64(time.Second) / *qps), *timeout)
		fmt.Print(staticPodManifest(0))
		return nil
	}
	res := newResults()
	lat := map[string][]time.Duration{}
	wall := map[string]float64{}
	err = withKubeletEnv(ctx, *kubelet, func(e *env) error {
		for _, r := range e.runtimes() {
			if *only != "" && !strings.EqualFold(*only, r.name) {
				continue
			}
			k, err := startKubelet(ctx, e, r, *kubelet, gateMap)
			if err != nil {
				return err
			}
			l, w, runErr := k.staticPodStartup(ctx, *pods, *qps, *timeout)
			err = errors.Join(runErr, k.stop(ctx))
			if err != nil {
				return err
			}
			lat[r.name], wall[r.name] = l, w.Seconds()
		}
		return nil
	})
	if err != nil {
		return err
	}
	name := fmt.Sprintf("kubelet: %d static pods at %g/s, startup", *pods, *qps)
	res.rows = append(res.rows,
		percentileRow(name+" p50", lat["Skiff"], lat["containerd"], 50),
		percentileRow(name+" p99", lat["Skiff"], lat["containerd"], 99))
	res.value(fmt.Sprintf("kubelet: %d static pods at %g/s, all Running", *pods, *qps), "s", wall["Skiff"], wall["containerd"])
	cmd := "go run ./hack/bench kubelet " + strings.Join(args, " ")
	return res.finish(*md, strings.TrimSpace(cmd))
}

// benchKubeletStats is "bench kubelet-stats".
func benchKubeletStats(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kubelet-stats", flag.ExitOnError)
	kubelet := fs.String("kubelet", defaultKubelet(), "standalone kubelet (hack/node-e2e.sh builds it)")
	gates := fs.String("feature-gates", "PodAndContainerStatsFromCRI=true", "kubelet feature gates, Name=true,Other=false")
	only := fs.String("runtime", "", "only this runtime (Skiff or containerd)")
	_ = fs.Parse(args)
	gateMap, err := parseGates(*gates)
	if err != nil {
		return err
	}
	return withKubeletEnv(ctx, *kubelet, func(e *env) error {
		for _, r := range e.runtimes() {
			if *only != "" && !strings.EqualFold(*only, r.name) {
				continue
			}
			k, err := startKubelet(ctx, e, r, *kubelet, gateMap)
			if err != nil {
				return err
			}
			runErr := k.statsOfKnownWorkload(ctx)
			if err := errors.Join(runErr, k.stop(ctx)); err != nil {
				return err
			}
		}
		return nil
	})
}

func defaultKubelet() string {
	return filepath.Join(toolsDir(), "node-e2e-v1.37.2", "kubelet")
}

// percentileRow is a row of p-th percentiles: both figures of a runtime
// hold the same value, as for a single reading.
func percentileRow(name string, skiff, ctrd []time.Duration, p int) row {
	fig := func(d []time.Duration) figure {
		f := figureOf(d, float64(time.Second))
		if f.n == 0 {
			return f
		}
		s := slices.Clone(d)
		slices.Sort(s)
		v := float64(percentile(s, p)) / float64(time.Second)
		return figure{median: v, p95: v, n: 1}
	}
	return row{name: name, unit: "s", skiff: fig(skiff), ctrd: fig(ctrd)}
}

func parseGates(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		b, err := strconv.ParseBool(v)
		if !ok || k == "" || err != nil {
			return nil, fmt.Errorf("feature gate %q: want Name=true or Name=false", kv)
		}
		out[k] = b
	}
	return out, nil
}

// kubeletTunables are the sysctls the kubelet sets to its liking at start
// (as hack/node-e2e.sh lists them): the benchmark puts back what the host
// had.
var kubeletTunables = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// containerLogLinks is where the kubelet links every container's log,
// whatever its configuration says.
const containerLogLinks = "/var/log/containers"

// withKubeletEnv runs f in a fresh side-by-side env, refusing to start when
// a kubelet runs already (hack/node-e2e.sh of another engineer: the ports
// and sysctls are the machine's), and puts back the sysctls and the host
// directories the kubelet touched.
func withKubeletEnv(ctx context.Context, kubelet string, f func(*env) error) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("kubelet: must run as root")
	}
	if !fileExists(kubelet) {
		return fmt.Errorf("kubelet: no kubelet at %s (hack/node-e2e.sh builds it, or pass -kubelet)", kubelet)
	}
	if pid := runningKubelet(); pid != 0 {
		return fmt.Errorf("kubelet: another kubelet runs (pid %d); its ports and sysctls are the machine's", pid)
	}
	was := map[string]string{}
	for _, t := range kubeletTunables {
		if b, err := os.ReadFile("/proc/sys/" + t); err == nil {
			was[t] = strings.TrimSpace(string(b))
		}
	}
	linksExisted := fileExists(containerLogLinks)
	defer func() {
		for t, v := range was {
			if b, rerr := os.ReadFile("/proc/sys/" + t); rerr == nil && strings.TrimSpace(string(b)) != v {
				if werr := os.WriteFile("/proc/sys/"+t, []byte(v), 0o644); werr != nil {
					err = errors.Join(err, fmt.Errorf("restore sysctl %s: %w", t, werr))
				}
			}
		}
		if !linksExisted {
			_ = os.Remove(containerLogLinks)
		}
	}()
	bin, err := os.MkdirTemp("", "skiff-bench-bin.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	if err := buildSkiff(ctx, bin); err != nil {
		return err
	}
	e, err := newEnv(ctx, bin)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	for _, r := range e.runtimes() {
		imgs := []string{podImage}
		if r == e.ctrd {
			imgs = append(imgs, sandboxImage)
		}
		if err := r.pull(ctx, imgs...); err != nil {
			return err
		}
	}
	return f(e)
}

// runningKubelet is the pid of a kubelet process, or 0.
func runningKubelet() int {
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == "kubelet" && !zombie(pid) {
			return pid
		}
	}
	return 0
}

// kubeletRun is one kubelet against one runtime.
type kubeletRun struct {
	e         *env
	r         *runtimeUnderTest
	dir       string
	manifests string
	node      string
	daemon    *daemon
	client    *http.Client
}

const kubeletReadOnly = "http://127.0.0.1:10255"

// startKubelet starts the kubelet against r and waits until it is healthy.
func startKubelet(ctx context.Context, e *env, r *runtimeUnderTest, kubelet string, gates map[string]bool) (*kubeletRun, error) {
	k := &kubeletRun{e: e, r: r, dir: filepath.Join(e.tmp, "kubelet-"+strings.ToLower(r.name)), client: &http.Client{Timeout: 10 * time.Second}}
	k.manifests = filepath.Join(k.dir, "manifests")
	for _, d := range []string{k.manifests, filepath.Join(k.dir, "pod-logs"), filepath.Join(k.dir, "root")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The kubelet refuses a cgroup root that does not exist.
	for _, root := range cgroupRoots() {
		if err := os.MkdirAll(filepath.Join(root, e.cgroupParent), 0o755); err != nil && !errors.Is(err, syscall.EROFS) {
			return nil, fmt.Errorf("kubelet cgroup root: %w", err)
		}
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	k.node = strings.ToLower(host)
	cfg := filepath.Join(k.dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(kubeletConfig(k.manifests, filepath.Join(k.dir, "pod-logs"), e.cgroupParent, gates)), 0o644); err != nil {
		return nil, err
	}
	k.daemon, err = start(ctx, k.dir, kubelet, "--config", cfg, "--container-runtime-endpoint", r.endpoint(),
		"--root-dir", filepath.Join(k.dir, "root"), "--hostname-override", k.node, "--v", "1")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if resp, err := k.client.Get("http://127.0.0.1:10248/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if !k.daemon.running() || time.Now().After(deadline) {
			err := fmt.Errorf("kubelet against %s did not become healthy:\n%s", r.name, tail(k.daemon.logPath(), 30))
			return nil, errors.Join(err, k.stop(ctx))
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), k.stop(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return k, nil
}

// stop removes the manifests, waits until the kubelet has stopped its pods,
// stops it, removes what its pods left through the runtime and unmounts
// what it mounted below its root dir.
func (k *kubeletRun) stop(ctx context.Context) error {
	var errs []error
	if k.daemon.running() {
		ents, _ := os.ReadDir(k.manifests)
		for _, ent := range ents {
			_ = os.Remove(filepath.Join(k.manifests, ent.Name()))
		}
		// The kubelet kills the containers of pods whose manifest is gone;
		// it removes their sandboxes only later (garbage collection).
		deadline := time.Now().Add(3 * time.Minute)
		for {
			n, err := k.runningContainers(ctx)
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("kubelet against %s: %d containers still running 3 min after the manifests went (%v)", k.r.name, n, err))
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	k.daemon.stop()
	if err := k.r.removeAllPods(ctx); err != nil {
		errs = append(errs, err)
	}
	// The kubelet's cgroups (kubepods, its QoS classes, one per pod) are
	// its own to leave; a cgroup below a pod's is a container's the runtime
	// left, a leak.
	kubepods := filepath.Join(k.e.cgroupParent, "kubepods")
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(filepath.Join(root, kubepods), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasPrefix(filepath.Base(filepath.Dir(p)), "pod") {
				errs = append(errs, fmt.Errorf("%s left container cgroup %s", k.r.name, p))
			}
			return nil
		})
	}
	removeCgroups(kubepods)
	mounts := mountsUnder(k.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	// The kubelet's links to the logs of this run's containers.
	ents, _ := os.ReadDir(containerLogLinks)
	for _, ent := range ents {
		if l, err := os.Readlink(filepath.Join(containerLogLinks, ent.Name())); err == nil && strings.HasPrefix(l, k.dir+"/") {
			_ = os.Remove(filepath.Join(containerLogLinks, ent.Name()))
		}
	}
	return errors.Join(errs...)
}

func (k *kubeletRun) runningContainers(ctx context.Context) (int, error) {
	resp, err := k.r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil {
		return -1, err
	}
	return len(resp.GetContainers()), nil
}

// staticPodStartup writes n manifests at qps a second and returns each
// pod's startup latency and the time until all ran.
func (k *kubeletRun) staticPodStartup(ctx context.Context, n int, qps float64, timeout time.Duration) ([]time.Duration, time.Duration, error) {
	written := make([]time.Time, n)
	running := make([]time.Time, n)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			at := start.Add(time.Duration(float64(i) / qps * float64(time.Second)))
			select {
			case <-ctx.Done():
				done <- ctx.Err()
				return
			case <-time.After(time.Until(at)):
			}
			if err := writeAtomic(filepath.Join(k.manifests, fmt.Sprintf("bench-%d.yaml", i)), staticPodManifest(i)); err != nil {
				done <- err
				return
			}
			written[i] = time.Now()
		}
		done <- nil
	}()
	deadline := start.Add(time.Duration(float64(n)/qps*float64(time.Second)) + timeout)
	names := map[string]int{}
	for i := 0; i < n; i++ {
		names[fmt.Sprintf("bench-%d-%s", i, k.node)] = i
	}
	seen, writerDone := 0, false
	for seen < n {
		if !writerDone {
			select {
			case err := <-done:
				if err != nil {
					return nil, 0, err
				}
				writerDone = true
			default:
			}
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("kubelet against %s: %d of %d pods running after %v", k.r.name, seen, n, time.Since(start).Round(time.Second))
		}
		if !k.daemon.running() {
			return nil, 0, fmt.Errorf("kubelet against %s exited:\n%s", k.r.name, tail(k.daemon.logPath(), 30))
		}
		list, err := k.pods(ctx)
		now := time.Now()
		if err == nil {
			for _, p := range list.Items {
				i, ok := names[p.Metadata.Name]
				if !ok || !running[i].IsZero() || !p.running() {
					continue
				}
				running[i] = now
				seen++
			}
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !writerDone {
		if err := <-done; err != nil {
			return nil, 0, err
		}
	}
	lat := make([]time.Duration, n)
	last := start
	for i := range lat {
		lat[i] = running[i].Sub(written[i])
		if running[i].After(last) {
			last = running[i]
		}
	}
	return lat, last.Sub(start), nil
}

// podList is what the benchmark reads of the kubelet's GET /pods.
type podList struct {
	Items []podItem `json:"items"`
}

type podItem struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Phase             string `json:"phase"`
		ContainerStatuses []struct {
			State struct {
				Running *struct{} `json:"running"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// running is a pod Running with every container running.
func (p *podItem) running() bool {
	if p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil {
			return false
		}
	}
	return true
}

func (k *kubeletRun) pods(ctx context.Context) (*podList, error) {
	var out podList
	if err := k.getJSON(ctx, "/pods", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (k *kubeletRun) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, kubeletReadOnly+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func (k *kubeletRun) getJSON(ctx context.Context, path string, v any) error {
	b, err := k.get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// statsOfKnownWorkload runs one pod holding 64 MiB and prints what the
// kubelet reports of it.
func (k *kubeletRun) statsOfKnownWorkload(ctx context.Context) error {
	const held = 64 << 20
	if err := writeAtomic(filepath.Join(k.manifests, "stats.yaml"), statsPodManifest()); err != nil {
		return err
	}
	pod := "stats-" + k.node
	deadline := time.Now().Add(2 * time.Minute)
	var ws, cadvisor uint64
	var lastErr error
	for time.Now().Before(deadline) {
		ws, cadvisor, lastErr = k.workingSet(ctx, pod, "hold")
		if lastErr == nil && ws >= held && cadvisor >= held {
			break
		}
		time.Sleep(2 * time.Second)
	}
	fmt.Printf("kubelet-stats %s: pod %s container hold holds %d MiB in /dev/shm: /stats/summary workingSetBytes %d (%.1f MiB), /metrics/cadvisor container_memory_working_set_bytes %d (%.1f MiB)",
		k.r.name, pod, held>>20, ws, float64(ws)/(1<<20), cadvisor, float64(cadvisor)/(1<<20))
	if lastErr != nil {
		fmt.Printf(", last error: %v", lastErr)
	}
	fmt.Println()
	return nil
}

// workingSet reads a container's working set from /stats/summary and from
// /metrics/cadvisor.
func (k *kubeletRun) workingSet(ctx context.Context, pod, ctr string) (summary, cadvisor uint64, err error) {
	var sum struct {
		Pods []struct {
			PodRef struct {
				Name string `json:"name"`
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Memory struct {
					WorkingSetBytes uint64 `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"containers"`
		} `json:"pods"`
	}
	var errs []error
	if err := k.getJSON(ctx, "/stats/summary", &sum); err != nil {
		errs = append(errs, err)
	}
	for _, p := range sum.Pods {
		for _, c := range p.Containers {
			if p.PodRef.Name == pod && c.Name == ctr {
				summary = c.Memory.WorkingSetBytes
			}
		}
	}
	b, err := k.get(ctx, "/metrics/cadvisor")
	if err != nil {
		errs = append(errs, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "container_memory_working_set_bytes{") ||
			!strings.Contains(l, `container="`+ctr+`"`) || !strings.Contains(l, `pod="`+pod+`"`) {
			continue
		}
		f := strings.Fields(l[strings.LastIndexByte(l, '}')+1:])
		if len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				cadvisor = uint64(v)
			}
		}
	}
	return summary, cadvisor, errors.Join(errs...)
}

func writeAtomic(path, content string) error {
	// The kubelet ignores files whose name starts with a dot.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kubeletConfig is the standalone kubelet's configuration: hack/node-e2e.sh's
// base (cgroup v1 without systemd), with every path in the benchmark's
// temp dir, the read-only port on loopback for pod status, and no image
// garbage collection (the images are pulled once, before the run).
func kubeletConfig(manifests, podLogs, cgroupRoot string, gates map[string]bool) string {
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: %q
podLogsDir: %q
cgroupDriver: cgroupfs
cgroupRoot: %q
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
readOnlyPort: 10255
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
serializeImagePulls: false
maxPods: 250
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
`, manifests, podLogs, cgroupRoot)
	if len(gates) > 0 {
		cfg += "featureGates:\n"
		for k, v := range gates {
			cfg += fmt.Sprintf("  %s: %v\n", k, v)
		}
	}
	return cfg
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

// statsPodManifest is the known workload of kubelet-stats: 64 MiB written
// to the pod's /dev/shm (tmpfs, charged to the writer's memory cgroup and
// never reclaimable without swap), then sleep.
func statsPodManifest() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: stats
  namespace: bench
spec:
  containers:
  - name: hold
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "dd if=/dev/zero of=/dev/shm/hold bs=1M count=64 && exec sleep 3600"]
  terminationGracePeriodSeconds: 0
`, podImage)
}
