package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// criSamples are one runtime's timings from critest's benchmark specs.
type criSamples struct {
	ops   map[string][]time.Duration // critest's operation names
	cycle []time.Duration            // "create PodSandbox and container", one per run
}

// lifecycleResults is critest's LifecycleBenchmarksResultsSet, as it writes
// pod_benchmark_data.json and container_benchmark_data.json.
type lifecycleResults struct {
	OperationsNames []string `json:"operationsNames"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

// benchCRI runs critest's own -benchmark specs against both runtimes,
// alternating, runs times each: the pod lifecycle and the container
// lifecycle n samples a run, the full pod+container cycle once a run.
func benchCRI(ctx context.Context, e *env, n, runs int, res *results) error {
	critest := filepath.Join(toolsDir(), "critest")
	if !fileExists(critest) {
		cmd := exec.CommandContext(ctx, "hack/cri-tools.sh", "critest", critest)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build critest: %w", err)
		}
	}
	params := filepath.Join(e.tmp, "benchmark-params.yaml")
	// No image benchmarks: PullImage is "bench pull"'s. critest fails its
	// full-cycle spec above 5 s; a timing must not fail a run here, so the
	// limit is one a working runtime never reaches.
	if err := os.WriteFile(params, []byte(fmt.Sprintf("podsNumber: %d\npodsNumberParallel: 1\ncontainersNumber: %d\ncontainersNumberParallel: 1\nimagesNumber: 0\npodContainerStartBenchmarkTimeoutSeconds: 120\n", n, n)), 0o644); err != nil {
		return err
	}
	if err := e.ctrd.pull(ctx, sandboxImage); err != nil {
		return err
	}
	got := map[string]*criSamples{}
	for _, r := range e.runtimes() {
		got[r.name] = &criSamples{ops: map[string][]time.Duration{}}
	}
	for i := 0; i < runs; i++ {
		order := e.runtimes()
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, r := range order {
			fmt.Fprintf(os.Stderr, "bench cri: run %d/%d, %s\n", i+1, runs, r.name)
			if err := runCritest(ctx, critest, params, filepath.Join(e.tmp, fmt.Sprintf("critest-%s-%d", r.name, i)), r, got[r.name]); err != nil {
				return err
			}
		}
	}
	s, c := got[e.skiff.name], got[e.ctrd.name]
	for _, op := range []struct{ name, critest string }{
		{"RunPodSandbox", "CreatePod"},
		{"PodSandboxStatus", "StatusPod"},
		{"StopPodSandbox", "StopPod"},
		{"RemovePodSandbox", "RemovePod"},
		{"CreateContainer", "CreateContainer"},
		{"StartContainer", "StartContainer"},
		{"Create + StartContainer", "CreateContainer+StartContainer"},
		{"ContainerStatus", "StatusContainer"},
		{"StopContainer", "StopContainer"},
		{"RemoveContainer", "RemoveContainer"},
	} {
		res.durations("critest: "+op.name, "ms", s.ops[op.critest], c.ops[op.critest])
	}
	res.durations("critest: pod + container full cycle", "ms", s.cycle, c.cycle)
	return nil
}

// runCritest runs critest -benchmark once against r in dir and adds its
// samples to into. A failed spec is an error: the numbers of a run that
// did not work are not numbers.
func runCritest(ctx context.Context, critest, params, dir string, r *runtimeUnderTest, into *criSamples) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "critest.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, critest,
		"-benchmark",
		"--runtime-endpoint", r.endpoint(),
		"--image-endpoint", r.endpoint(),
		"--benchmarking-params-file", params,
		"--benchmarking-output-dir", dir,
		"--ginkgo.no-color",
		"--ginkgo.json-report", filepath.Join(dir, "report.json"),
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		tail, _ := exec.Command("tail", "-n", "30", logPath).CombinedOutput()
		return fmt.Errorf("critest -benchmark against %s: %w\n%s", r.name, err, tail)
	}
	for _, f := range []string{"pod_benchmark_data.json", "container_benchmark_data.json"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("critest against %s wrote no %s: %w", r.name, f, err)
		}
		var lr lifecycleResults
		if err := json.Unmarshal(raw, &lr); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, dp := range lr.Datapoints {
			byName := map[string]time.Duration{}
			for i, ns := range dp.OperationsDurationsNs {
				if i < len(lr.OperationsNames) {
					byName[lr.OperationsNames[i]] = time.Duration(ns)
					into.ops[lr.OperationsNames[i]] = append(into.ops[lr.OperationsNames[i]], time.Duration(ns))
				}
			}
			if c, ok := byName["CreateContainer"]; ok {
				into.ops["CreateContainer+StartContainer"] = append(into.ops["CreateContainer+StartContainer"], c+byName["StartContainer"])
			}
		}
	}
	cycle, err := fullCycle(filepath.Join(dir, "report.json"))
	if err != nil {
		return fmt.Errorf("critest against %s: %w", r.name, err)
	}
	into.cycle = append(into.cycle, cycle...)
	return nil
}

// fullCycle reads the gmeasure experiment of critest's "start a container
// from scratch" spec (RunPodSandbox, CreateContainer, StartContainer,
// StopPodSandbox, RemovePodSandbox) from ginkgo's JSON report.
func fullCycle(report string) ([]time.Duration, error) {
	raw, err := os.ReadFile(report)
	if err != nil {
		return nil, err
	}
	var reports []struct {
		SpecReports []struct {
			LeafNodeText  string
			State         string
			ReportEntries []struct {
				Name  string
				Value struct{ AsJSON string }
			}
		}
	}
	if err := json.Unmarshal(raw, &reports); err != nil {
		return nil, fmt.Errorf("ginkgo report: %w", err)
	}
	var out []time.Duration
	for _, rep := range reports {
		for _, sr := range rep.SpecReports {
			if !strings.Contains(sr.LeafNodeText, "start a container from scratch") {
				continue
			}
			if sr.State != "passed" {
				return nil, fmt.Errorf("spec %q %s", sr.LeafNodeText, sr.State)
			}
			for _, re := range sr.ReportEntries {
				var exp struct {
					Measurements []struct {
						Name      string
						Durations []time.Duration
					}
				}
				if err := json.Unmarshal([]byte(re.Value.AsJSON), &exp); err != nil {
					continue
				}
				for _, m := range exp.Measurements {
					if m.Name == "create PodSandbox and container" {
						out = append(out, m.Durations...)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no full-cycle measurement in %s", report)
	}
	return out, nil
}
