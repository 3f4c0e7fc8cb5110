package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cpuTimes is the machine-wide CPU time line of /proc/stat, in ticks.
type cpuTimes struct {
	total, steal uint64
}

// readCPUTimes reads the "cpu" line of /proc/stat. On a virtual machine the
// steal column is the time the hypervisor gave the vCPUs to someone else:
// when it is large, every figure of the run is slower for both runtimes.
func readCPUTimes() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "cpu "); ok {
			return parseCPULine(line)
		}
	}
	if err := sc.Err(); err != nil {
		return cpuTimes{}, err
	}
	return cpuTimes{}, fmt.Errorf("/proc/stat: no cpu line")
}

// parseCPULine sums the columns of a /proc/stat cpu line (user nice system
// idle iowait irq softirq steal guest guest_nice); guest time is already
// counted in user, so only the first eight make the total.
func parseCPULine(line string) (cpuTimes, error) {
	var t cpuTimes
	for i, f := range strings.Fields(line) {
		if i >= 8 {
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat cpu column %d %q: %w", i+1, f, err)
		}
		t.total += v
		if i == 7 {
			t.steal = v
		}
	}
	return t, nil
}

// stealSince is the share of CPU time stolen since start, in percent, or -1
// when /proc/stat cannot be read.
func stealSince(start cpuTimes) float64 {
	now, err := readCPUTimes()
	if err != nil || now.total <= start.total {
		return -1
	}
	return 100 * float64(now.steal-start.steal) / float64(now.total-start.total)
}

// stealNote says how much CPU the hypervisor took during the run.
func stealNote(pct float64) string {
	if pct < 0 {
		return "CPU steal time unknown"
	}
	return fmt.Sprintf("CPU steal time during the run: %.1f%% of all CPU time", pct)
}
