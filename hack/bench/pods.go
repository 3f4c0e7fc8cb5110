package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podRun is what "bench pods" measured on one runtime.
type podRun struct {
	ops                   map[string][]time.Duration // per-pod RPC timings, sequential churn
	seqUp, seqDown        time.Duration              // n pods one after the other (up: the pods' own times, pauses to measure excluded)
	parUp, parDown        time.Duration              // n pods, parallel at a time
	idle                  memory                     // daemon alone, no pod
	mem                   map[int]memory             // by pods up
	lists                 map[int]map[string][]time.Duration
	memLevels, listLevels []int
}

// memory is the summed RSS and PSS of a runtime's daemon, shims and pod
// infrastructure: the process each pod runs that is none of its
// containers' (containerd's pause container, Skiff's pod init).
type memory struct {
	rss, pss float64 // MiB
	// daemonPSS and infraPSS are the daemon's and the pods' infrastructure
	// parts of pss; the rest is the shims'.
	daemonPSS, infraPSS float64
	procs               int
}

// listRPCs are the calls whose latency "bench pods" follows as pods grow.
var listRPCs = []string{"ListContainers", "ListContainerStats", "ListPodSandboxStats"}

// levels keeps the sizes of want that n reaches, and n itself.
func levels(n int, want ...int) []int {
	var out []int
	for _, w := range want {
		if w < n {
			out = append(out, w)
		}
	}
	return append(out, n)
}

// benchPods churns n pods of one container each on both runtimes, one after
// the other and parallel at a time, and on the way up reads memory (with
// 20 and n pods) and the latency of the list and stats calls (10, 50, n).
func benchPods(ctx context.Context, e *env, n, parallel, listSamples int, res *results) error {
	if err := e.ctrd.pull(ctx, sandboxImage); err != nil {
		return err
	}
	runs := map[string]*podRun{}
	for _, r := range e.runtimes() {
		if err := r.pull(ctx, podImage); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench pods: %s, %d pods\n", r.name, n)
		pr, err := churn(ctx, e, r, n, parallel, listSamples)
		if err != nil {
			return err
		}
		runs[r.name] = pr
	}
	s, c := runs[e.skiff.name], runs[e.ctrd.name]
	for _, op := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "pod up (run + create + start)", "StopContainer", "StopPodSandbox", "RemovePodSandbox"} {
		res.durations("pods: "+op, "ms", s.ops[op], c.ops[op])
	}
	res.value(fmt.Sprintf("%d pods one at a time: all up", n), "s", s.seqUp.Seconds(), c.seqUp.Seconds())
	res.value(fmt.Sprintf("%d pods one at a time: all removed", n), "s", s.seqDown.Seconds(), c.seqDown.Seconds())
	res.value(fmt.Sprintf("%d pods %d at a time: all up", n, parallel), "s", s.parUp.Seconds(), c.parUp.Seconds())
	res.value(fmt.Sprintf("%d pods %d at a time: all removed", n, parallel), "s", s.parDown.Seconds(), c.parDown.Seconds())
	res.value("daemon idle RSS", "MiB", s.idle.rss, c.idle.rss)
	res.value("daemon idle PSS", "MiB", s.idle.pss, c.idle.pss)
	for _, l := range s.memLevels {
		sm, cm := s.mem[l], c.mem[l]
		res.value(fmt.Sprintf("RSS, daemon + shims + pause/pod init, %d pods", l), "MiB", sm.rss, cm.rss)
		res.value(fmt.Sprintf("PSS, daemon + shims + pause/pod init, %d pods", l), "MiB", sm.pss, cm.pss)
		res.value(fmt.Sprintf("RSS per pod above idle, %d pods", l), "MiB", (sm.rss-s.idle.rss)/float64(l), (cm.rss-c.idle.rss)/float64(l))
		res.value(fmt.Sprintf("PSS per pod above idle, %d pods", l), "MiB", (sm.pss-s.idle.pss)/float64(l), (cm.pss-c.idle.pss)/float64(l))
		res.value(fmt.Sprintf("  of which the daemon's, %d pods", l), "MiB", (sm.daemonPSS-s.idle.pss)/float64(l), (cm.daemonPSS-c.idle.pss)/float64(l))
		res.value(fmt.Sprintf("  of which the shims', %d pods", l), "MiB", (sm.pss-sm.daemonPSS-sm.infraPSS)/float64(l), (cm.pss-cm.daemonPSS-cm.infraPSS)/float64(l))
		res.value(fmt.Sprintf("  of which pause (containerd) / pod init (Skiff), %d pods", l), "MiB", sm.infraPSS/float64(l), cm.infraPSS/float64(l))
	}
	for _, rpc := range listRPCs {
		for _, l := range s.listLevels {
			res.durations(fmt.Sprintf("%s, %d pods", rpc, l), "ms", s.lists[l][rpc], c.lists[l][rpc])
		}
	}
	return nil
}

// pod is one benchmark pod and its container.
type pod struct {
	id, ctr string
}

// churn is "bench pods" on one runtime. Every pod is gone when it returns
// nil; on error env.close removes what is left.
func churn(ctx context.Context, e *env, r *runtimeUnderTest, n, parallel, listSamples int) (*podRun, error) {
	pr := &podRun{
		ops:        map[string][]time.Duration{},
		mem:        map[int]memory{},
		lists:      map[int]map[string][]time.Duration{},
		memLevels:  levels(n, 20),
		listLevels: levels(n, 10, 50),
	}
	seq := 0
	next := func() int { seq++; return seq }
	// One pod up and down first, so that no figure includes a first-use cost
	// (image unpack, CNI plugin page cache, lazily started goroutines).
	p, err := podUp(ctx, e, r, next(), nil)
	if err != nil {
		return nil, err
	}
	if err := podDown(ctx, r, p, nil); err != nil {
		return nil, err
	}
	if pr.idle, err = memoryOf(ctx, e, r, false); err != nil {
		return nil, err
	}

	// One at a time, pausing the clock at each level to measure.
	var pods []pod
	for len(pods) < n {
		p, err := podUp(ctx, e, r, next(), pr.ops)
		if err != nil {
			return nil, err
		}
		pods = append(pods, p)
		pr.seqUp += pr.ops["pod up (run + create + start)"][len(pr.ops["pod up (run + create + start)"])-1]
		up := len(pods)
		if slices.Contains(pr.memLevels, up) {
			if err := checkRunning(ctx, r, up); err != nil {
				return nil, err
			}
			// A moment for the new shim's start-up garbage to go.
			time.Sleep(time.Second)
			if pr.mem[up], err = memoryOf(ctx, e, r, true); err != nil {
				return nil, err
			}
		}
		if slices.Contains(pr.listLevels, up) {
			if pr.lists[up], err = listLatency(ctx, r, listSamples); err != nil {
				return nil, err
			}
		}
	}
	start := time.Now()
	for _, p := range pods {
		if err := podDown(ctx, r, p, pr.ops); err != nil {
			return nil, err
		}
	}
	pr.seqDown = time.Since(start)

	// parallel at a time.
	pods = make([]pod, n)
	start = time.Now()
	if err := inParallel(n, parallel, func(i int) error {
		var err error
		pods[i], err = podUp(ctx, e, r, 1000000+i, nil)
		return err
	}); err != nil {
		return nil, err
	}
	pr.parUp = time.Since(start)
	if err := checkRunning(ctx, r, n); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := inParallel(n, parallel, func(i int) error { return podDown(ctx, r, pods[i], nil) }); err != nil {
		return nil, err
	}
	pr.parDown = time.Since(start)
	return pr, nil
}

// inParallel runs f(0..n-1), at most width at a time, and returns the
// errors joined.
func inParallel(n, width int, f func(i int) error) error {
	idx := make(chan int)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for w := 0; w < max(width, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return errors.Join(errs...)
}

// podUp runs pod number i with one busybox container sleeping, as the
// kubelet asks: RunPodSandbox, CreateContainer, StartContainer, each timed
// into ops if ops is not nil.
func podUp(ctx context.Context, e *env, r *runtimeUnderTest, i int, ops map[string][]time.Duration) (pod, error) {
	name := fmt.Sprintf("bench-%d", i)
	uid := fmt.Sprintf("%08x-bench-%s-%d", os.Getpid(), strings.ToLower(r.name), i)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: uid, Namespace: "bench"},
		Hostname:     name,
		LogDirectory: filepath.Join(r.dir, "pod-logs", uid),
		Labels:       map[string]string{"io.kubernetes.pod.name": name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: e.cgroupParent + "/pod" + strings.ReplaceAll(uid, "-", ""),
		},
	}
	var p pod
	t0 := time.Now()
	rp, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return p, fmt.Errorf("%s: RunPodSandbox %s: %w", r.name, name, err)
	}
	p.id = rp.PodSandboxId
	t1 := time.Now()
	cc, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.id,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
			Image:    &runtimeapi.ImageSpec{Image: podImage},
			Command:  []string{"sleep", "3600"},
			LogPath:  "sleep/0.log",
			Labels:   map[string]string{"io.kubernetes.container.name": "sleep"},
			Linux:    &runtimeapi.LinuxContainerConfig{},
		},
		SandboxConfig: cfg,
	})
	if err != nil {
		return p, fmt.Errorf("%s: CreateContainer in %s: %w", r.name, name, err)
	}
	p.ctr = cc.ContainerId
	t2 := time.Now()
	if _, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.ctr}); err != nil {
		return p, fmt.Errorf("%s: StartContainer in %s: %w", r.name, name, err)
	}
	t3 := time.Now()
	if ops != nil {
		ops["RunPodSandbox"] = append(ops["RunPodSandbox"], t1.Sub(t0))
		ops["CreateContainer"] = append(ops["CreateContainer"], t2.Sub(t1))
		ops["StartContainer"] = append(ops["StartContainer"], t3.Sub(t2))
		ops["pod up (run + create + start)"] = append(ops["pod up (run + create + start)"], t3.Sub(t0))
	}
	return p, nil
}

// podDown is the kubelet's way out: StopContainer (no grace: sleep as PID 1
// ignores SIGTERM), StopPodSandbox, RemovePodSandbox.
func podDown(ctx context.Context, r *runtimeUnderTest, p pod, ops map[string][]time.Duration) error {
	t0 := time.Now()
	if _, err := r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: p.ctr, Timeout: 0}); err != nil {
		return fmt.Errorf("%s: StopContainer %s: %w", r.name, p.ctr, err)
	}
	t1 := time.Now()
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("%s: StopPodSandbox %s: %w", r.name, p.id, err)
	}
	t2 := time.Now()
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("%s: RemovePodSandbox %s: %w", r.name, p.id, err)
	}
	t3 := time.Now()
	if ops != nil {
		ops["StopContainer"] = append(ops["StopContainer"], t1.Sub(t0))
		ops["StopPodSandbox"] = append(ops["StopPodSandbox"], t2.Sub(t1))
		ops["RemovePodSandbox"] = append(ops["RemovePodSandbox"], t3.Sub(t2))
	}
	return nil
}

// checkRunning fails unless the runtime lists want running containers.
func checkRunning(ctx context.Context, r *runtimeUnderTest, want int) error {
	resp, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil {
		return fmt.Errorf("%s: ListContainers: %w", r.name, err)
	}
	if got := len(resp.GetContainers()); got != want {
		return fmt.Errorf("%s: %d containers running, want %d", r.name, got, want)
	}
	return nil
}

// listLatency times each list call samples times, after one untimed call.
func listLatency(ctx context.Context, r *runtimeUnderTest, samples int) (map[string][]time.Duration, error) {
	calls := map[string]func() error{
		"ListContainers": func() error {
			_, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		},
		"ListContainerStats": func() error {
			_, err := r.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return err
		},
		"ListPodSandboxStats": func() error {
			_, err := r.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		},
	}
	out := map[string][]time.Duration{}
	for _, name := range listRPCs {
		call := calls[name]
		for i := -1; i < samples; i++ {
			t0 := time.Now()
			if err := call(); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", r.name, name, err)
			}
			if i >= 0 {
				out[name] = append(out[name], time.Since(t0))
			}
		}
	}
	return out, nil
}

// memoryOf sums RSS and PSS (/proc/PID/smaps_rollup) of the runtime's
// daemon and, if pods, of its shims (skiff-shim processes of the binary
// this run built, containerd-shim-runc-v2 processes whose command line
// names this run's containerd socket) and of each pod's pause or pod init,
// the pid its verbose PodSandboxStatus names.
func memoryOf(ctx context.Context, e *env, r *runtimeUnderTest, pods bool) (memory, error) {
	pids := []int{r.daemon.cmd.Process.Pid}
	var infra []int
	if pods {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return memory{}, err
		}
		for _, ent := range ents {
			pid, err := strconv.Atoi(ent.Name())
			if err != nil || pid == pids[0] {
				continue
			}
			if r.isShim(e, pid) {
				pids = append(pids, pid)
			}
		}
		if infra, err = r.podInfraPids(ctx); err != nil {
			return memory{}, err
		}
	}
	var m memory
	for i, pid := range append(pids, infra...) {
		rss, pss, err := smapsRollup(pid)
		if err != nil {
			return memory{}, fmt.Errorf("%s: %w", r.name, err)
		}
		switch {
		case i == 0:
			m.daemonPSS = pss
		case i >= len(pids):
			m.infraPSS += pss
		}
		m.rss += rss
		m.pss += pss
		m.procs++
	}
	return m, nil
}

// podInfraPids lists the pause or pod init process of every pod, from the
// "pid" of the verbose PodSandboxStatus both runtimes give (0, and left
// out, for a pod without one).
func (r *runtimeUnderTest) podInfraPids(ctx context.Context) ([]int, error) {
	resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("%s: list pods: %w", r.name, err)
	}
	var out []int
	for _, p := range resp.GetItems() {
		st, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id, Verbose: true})
		if err != nil {
			return nil, fmt.Errorf("%s: pod %s: %w", r.name, p.Id, err)
		}
		var info struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
			return nil, fmt.Errorf("%s: pod %s: verbose info: %w", r.name, p.Id, err)
		}
		if info.Pid > 0 {
			out = append(out, info.Pid)
		}
	}
	return out, nil
}

func (r *runtimeUnderTest) isShim(e *env, pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	if r == e.skiff {
		return exe == filepath.Join(e.bin, "skiff-shim")
	}
	if filepath.Base(exe) != r.shimExe {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(cmdline, []byte(r.shimMark))
}

// smapsRollup reads a process's Rss and Pss, in MiB.
func smapsRollup(pid int) (rss, pss float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			rss = kb / 1024
		case "Pss:":
			pss = kb / 1024
		}
	}
	return rss, pss, sc.Err()
}
