package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// sizes are the knobs of the side-by-side benchmarks.
type sizes struct {
	criN, criRuns        int
	pods, parallel, list int
}

// smokeSizes finish both benchmarks in about a minute: every code path
// runs, no number means anything.
var smokeSizes = sizes{criN: 1, criRuns: 1, pods: 2, parallel: 2, list: 2}

// sideBySideMain runs "cri", "pods", "all" or "smoke": one build of Skiff,
// a fresh pair of runtimes for each benchmark, one table at the end.
func sideBySideMain(ctx context.Context, which string, args []string) error {
	fs := flag.NewFlagSet(which, flag.ExitOnError)
	var sz sizes
	if which == "cri" || which == "all" {
		fs.IntVar(&sz.criN, "cri-n", 20, "samples per critest run of the pod and container lifecycle benchmarks")
		fs.IntVar(&sz.criRuns, "runs", 2, "critest runs per runtime, alternating (the full-cycle figure has one sample a run)")
	}
	if which == "pods" || which == "all" {
		fs.IntVar(&sz.pods, "n", 100, "pods to churn, and the largest level of the memory and list figures")
		fs.IntVar(&sz.parallel, "parallel", 10, "pods up or down at a time in the parallel churn")
		fs.IntVar(&sz.list, "list-samples", 20, "samples of each list call at each level")
	}
	md := fs.String("md", "", "also write the Markdown table to this file")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if which == "smoke" {
		sz = smokeSizes
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s: must run as root", which)
	}
	bin, err := os.MkdirTemp("", "skiff-bench-bin.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	if err := buildSkiff(ctx, bin); err != nil {
		return err
	}
	res := newResults()
	run := func(f func(*env) error) (err error) {
		e, err := newEnv(ctx, bin)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, e.close()) }()
		return f(e)
	}
	if sz.criN > 0 {
		if err := run(func(e *env) error { return benchCRI(ctx, e, sz.criN, sz.criRuns, res) }); err != nil {
			return err
		}
	}
	if sz.pods > 0 {
		if err := run(func(e *env) error { return benchPods(ctx, e, sz.pods, sz.parallel, sz.list, res) }); err != nil {
			return err
		}
	}
	return res.finish(*md, "go run ./hack/bench "+strings.Join(append([]string{which}, args...), " "))
}
