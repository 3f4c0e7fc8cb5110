package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// figure is one runtime's value of a row: the median and 95th percentile of
// its samples (equal for a single reading such as a memory total).
type figure struct {
	median, p95 float64
	n           int
}

// row is one line of the side-by-side table.
type row struct {
	name        string
	unit        string // "ms", "s", "MiB"
	ctrd, skiff figure
}

// results gathers the rows of one invocation, in order.
type results struct {
	rows   []row
	start  cpuTimes // /proc/stat when the run began, for its steal time
	commit string   // the checkout's commit when the run began (what it built)
}

// newResults starts a run's results.
func newResults() *results {
	start, _ := readCPUTimes()
	return &results{start: start, commit: gitCommit()}
}

// durations adds a row of timings, in unit ("ms" or "s").
func (r *results) durations(name, unit string, skiff, ctrd []time.Duration) {
	scale := float64(time.Millisecond)
	if unit == "s" {
		scale = float64(time.Second)
	}
	r.rows = append(r.rows, row{name: name, unit: unit, skiff: figureOf(skiff, scale), ctrd: figureOf(ctrd, scale)})
}

// value adds a row of one reading per runtime.
func (r *results) value(name, unit string, skiff, ctrd float64) {
	r.rows = append(r.rows, row{name: name, unit: unit, skiff: figure{skiff, skiff, 1}, ctrd: figure{ctrd, ctrd, 1}})
}

func figureOf(d []time.Duration, scale float64) figure {
	if len(d) == 0 {
		return figure{math.NaN(), math.NaN(), 0}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return figure{median: float64(percentile(s, 50)) / scale, p95: float64(percentile(s, 95)) / scale, n: len(s)}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(p)/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (f figure) String() string {
	if f.n == 0 {
		return "–"
	}
	if f.n == 1 || f.median == f.p95 {
		return num(f.median)
	}
	return num(f.median) + " (p95 " + num(f.p95) + ")"
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (rw row) ratio() string {
	if rw.skiff.n == 0 || rw.ctrd.n == 0 || rw.ctrd.median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", rw.skiff.median/rw.ctrd.median)
}

// print writes the rows as aligned text.
func (r *results) print() {
	fmt.Printf("\n%-58s %-26s %-26s %s\n", "measure", "containerd", "Skiff", "Skiff/containerd")
	for _, rw := range r.rows {
		fmt.Printf("%-58s %-26s %-26s %s\n", rw.name+" ["+rw.unit+"]", rw.ctrd, rw.skiff, rw.ratio())
	}
}

// markdown is the README's table: medians (p95), the ratio of medians, and
// the commit, date and machine it was measured on.
func (r *results) markdown(cmdline string) string {
	var b strings.Builder
	b.WriteString("| measure | containerd | Skiff | Skiff/containerd |\n| --- | --- | --- | --- |\n")
	for _, rw := range r.rows {
		fmt.Fprintf(&b, "| %s | %s %s | %s %s | %s |\n", rw.name, rw.ctrd, rw.unit, rw.skiff, rw.unit, rw.ratio())
	}
	fmt.Fprintf(&b, "\nMedians (p95) of `%s` at commit %s, %s, on %d cores; containerd %s with runc %s from Debian, both freshly started in the same run with the same mirrors and CNI config.\n",
		cmdline, r.commitOrNow(), time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), containerdVersion(), runcVersion())
	if r.start.total > 0 {
		fmt.Fprintf(&b, "%s.\n", stealNote(stealSince(r.start)))
	}
	return b.String()
}

// commitOrNow is the commit the run began at, or the current one.
func (r *results) commitOrNow() string {
	if r.commit != "" {
		return r.commit
	}
	return gitCommit()
}

// finish prints the table and writes it to mdPath if set.
func (r *results) finish(mdPath, cmdline string) error {
	r.print()
	md := r.markdown(cmdline)
	fmt.Printf("\n%s", md)
	if mdPath == "" {
		return nil
	}
	return os.WriteFile(mdPath, []byte(md), 0o644)
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

func containerdVersion() string {
	out, err := exec.Command("containerd", "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return strings.SplitN(f[2], "~", 2)[0]
	}
	return "?"
}
