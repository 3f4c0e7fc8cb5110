// Command bench measures Skiff beside containerd + runc from Debian on the
// same machine in the same run, and prints the ratios the README quotes.
//
//	go run ./hack/bench exec [-n 50]   create+start+wait of /bin/true: skiff-shim runtime vs runc
//	go run ./hack/bench pull [-n 3]    pull of a 3-layer ~100 MB image: skiffd vs containerd 1.6
//	go run ./hack/bench cri [-n 20] [-runs 2] [-md FILE]
//	                                   critest -benchmark against both runtimes
//	go run ./hack/bench pods [-n 100] [-parallel 10] [-md FILE]
//	                                   churn, memory and list latency of n pods
//	go run ./hack/bench all [flags of cri and pods] [-md FILE]
//	                                   cri then pods, one table (the README's)
//	go run ./hack/bench smoke [-md FILE]
//	                                   all at the smallest sizes, for CI
//	go run ./hack/bench kubelet [-pods 100] [-qps 5] [-feature-gates G] [-md FILE]
//	                                   static pods under the standalone kubelet: startup p50/p99
//	go run ./hack/bench kubelet-stats [-feature-gates PodAndContainerStatsFromCRI=true]
//	                                   not a benchmark: what the kubelet reports of a pod holding 64 MiB
//
// cri, pods, all and smoke build skiffd and the shim from the checkout, then
// run them beside containerd 1.6 configured by the benchmark (same test
// registry mirrors, same CNI bridge conflist, cgroupfs), each freshly started;
// they print medians and p95 with the ratio Skiff/containerd and the
// Markdown table with the commit, and remove every pod, mount, netns, veth
// and cgroup they made on every path.
//
// It needs root, runc, containerd, the CNI plugins and busybox-static
// (hack/setup.sh installs them). Results are timings; they never decide a
// test: an error fails the run, a slow number does not.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench exec|pull|cri|pods|all|smoke|kubelet|kubelet-stats [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "exec":
		fs := flag.NewFlagSet("exec", flag.ExitOnError)
		n := fs.Int("n", 50, "iterations per runtime")
		shim := fs.String("shim", "", "skiff-shim binary (default: build it)")
		_ = fs.Parse(os.Args[2:])
		err = benchExec(ctx, *n, *shim)
	case "pull":
		fs := flag.NewFlagSet("pull", flag.ExitOnError)
		n := fs.Int("n", 3, "pulls per runtime")
		_ = fs.Parse(os.Args[2:])
		err = benchPull(ctx, *n)
	case "cri", "pods", "all", "smoke":
		err = sideBySideMain(ctx, os.Args[1], os.Args[2:])
	case "kubelet":
		err = benchKubelet(ctx, os.Args[2:])
	case "kubelet-stats":
		err = benchKubeletStats(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// stats summarises one runtime's samples.
type stats struct {
	name         string
	median, mean time.Duration
	min, max     time.Duration
	n            int
}

func summarize(name string, d []time.Duration) stats {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	st := stats{name: name, n: len(s)}
	if len(s) == 0 {
		return st
	}
	st.median, st.mean, st.min, st.max = s[len(s)/2], sum/time.Duration(len(s)), s[0], s[len(s)-1]
	return st
}

func report(title string, a, b stats) {
	fmt.Printf("\n%s\n", title)
	fmt.Printf("%-28s %6s %12s %12s %12s %12s\n", "runtime", "n", "median", "mean", "min", "max")
	for _, s := range []stats{a, b} {
		fmt.Printf("%-28s %6d %12v %12v %12v %12v\n", s.name, s.n, s.median.Round(time.Microsecond), s.mean.Round(time.Microsecond), s.min.Round(time.Microsecond), s.max.Round(time.Microsecond))
	}
	if b.median > 0 {
		fmt.Printf("ratio %s/%s (median): %.2f\n", a.name, b.name, float64(a.median)/float64(b.median))
	}
}
