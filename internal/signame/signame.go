// Package signame holds the one parser of signal names and numbers, shared
// by the CRI layer (stop signals) and the runtime CLI (kill).
package signame

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Real-time signals as user space numbers them: glibc keeps 32 and 33 for
// itself, so SIGRTMIN is 34, as in Docker's and the kubelet's tables.
const (
	RTMin = 34
	RTMax = 64
)

// signalAliases are the second names of signals that x/sys/unix knows under
// their first name only.
var signalAliases = map[string]syscall.Signal{
	"SIGCLD":  unix.SIGCHLD,
	"SIGIOT":  unix.SIGABRT,
	"SIGPOLL": unix.SIGIO,
}

// Parse reads a signal as images' STOPSIGNAL and command lines spell it:
// "SIGTERM", "TERM", "term", "15", "SIGRTMIN+3", "RTMAX-1", "SIGCLD". It
// reports false for anything that is not a signal number from 1 to RTMax.
func Parse(s string) (syscall.Signal, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil {
		return syscall.Signal(n), n > 0 && n <= RTMax
	}
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	if n := unix.SignalNum(s); n != 0 {
		return n, true
	}
	if n, ok := signalAliases[s]; ok {
		return n, true
	}
	for _, rt := range []struct {
		name string
		base int
		sign int
	}{{"SIGRTMIN", RTMin, 1}, {"SIGRTMAX", RTMax, -1}} {
		rest, ok := strings.CutPrefix(s, rt.name)
		if !ok {
			continue
		}
		off := 0
		if rest != "" {
			op := "+"
			if rt.sign < 0 {
				op = "-"
			}
			num, ok := strings.CutPrefix(rest, op)
			if !ok {
				return 0, false
			}
			var err error
			if off, err = strconv.Atoi(num); err != nil || off < 0 {
				return 0, false
			}
		}
		n := rt.base + rt.sign*off
		return syscall.Signal(n), n >= RTMin && n <= RTMax
	}
	return 0, false
}
