package cri

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Real-time signals as user space numbers them: glibc keeps 32 and 33 for
// itself, so SIGRTMIN is 34, as in Docker's and the kubelet's tables.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// signalAliases are the second names of signals that x/sys/unix knows under
// their first name only.
var signalAliases = map[string]syscall.Signal{
	"SIGCLD":  unix.SIGCHLD,
	"SIGIOT":  unix.SIGABRT,
	"SIGPOLL": unix.SIGIO,
}

// parseSignal reads a signal as images' STOPSIGNAL spell it: "SIGTERM",
// "TERM", "15", "SIGRTMIN+3", "RTMAX-1".
func parseSignal(s string) (syscall.Signal, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil {
		return syscall.Signal(n), n > 0 && n <= sigRTMax
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
	}{{"SIGRTMIN", sigRTMin, 1}, {"SIGRTMAX", sigRTMax, -1}} {
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
		return syscall.Signal(n), n >= sigRTMin && n <= sigRTMax
	}
	return 0, false
}

// criSignalName turns a runtimeapi.Signal into the signal's name:
// SIGNAL_SIGRTMINPLUS3 into SIGRTMIN+3.
func criSignalName(sig runtimeapi.Signal) string {
	name := strings.TrimPrefix(sig.String(), "SIGNAL_")
	name = strings.Replace(name, "PLUS", "+", 1)
	return strings.Replace(name, "MINUS", "-", 1)
}

// signalFromCRI is the number of a CRI signal; false for RUNTIME_DEFAULT.
func signalFromCRI(sig runtimeapi.Signal) (syscall.Signal, bool) {
	if sig == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return 0, false
	}
	return parseSignal(criSignalName(sig))
}

// signalToCRI is the CRI enum of a signal name or number, preferring the
// name as given (SIGCLD stays SIGCLD); RUNTIME_DEFAULT when the enum has
// no value for it (32 and 33, which glibc reserves).
func signalToCRI(name string) runtimeapi.Signal {
	n, ok := parseSignal(name)
	if !ok {
		return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
	}
	up := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(up, "SIG") {
		up = "SIG" + up
	}
	up = strings.Replace(strings.Replace(up, "+", "PLUS", 1), "-", "MINUS", 1)
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+up]; ok {
		return runtimeapi.Signal(v)
	}
	return signalNumberToCRI(n)
}

// signalNumberToCRI maps a number to its enum under the signal's first name.
func signalNumberToCRI(n syscall.Signal) runtimeapi.Signal {
	var name string
	switch {
	case n == sigRTMin:
		name = "SIGRTMIN"
	case n == sigRTMax:
		name = "SIGRTMAX"
	case n > sigRTMin && n <= sigRTMin+15:
		name = "SIGRTMINPLUS" + strconv.Itoa(int(n)-sigRTMin)
	case n < sigRTMax && n >= sigRTMax-14:
		name = "SIGRTMAXMINUS" + strconv.Itoa(sigRTMax-int(n))
	default:
		name = unix.SignalName(n)
	}
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+name]; ok && name != "" {
		return runtimeapi.Signal(v)
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}

// stopSignal is the signal StopContainer sends first: the container
// config's, else the image's STOPSIGNAL, else SIGTERM.
func stopSignal(cfg *runtimeapi.ContainerConfig, image string) syscall.Signal {
	if n, ok := signalFromCRI(cfg.GetStopSignal()); ok {
		return n
	}
	if image != "" {
		if n, ok := parseSignal(image); ok {
			return n
		}
	}
	return unix.SIGTERM
}

// criStopSignal is stopSignal as ContainerStatus reports it.
func criStopSignal(cfg *runtimeapi.ContainerConfig, image string) runtimeapi.Signal {
	if _, ok := signalFromCRI(cfg.GetStopSignal()); ok {
		return cfg.GetStopSignal()
	}
	if image != "" {
		if _, ok := parseSignal(image); ok {
			return signalToCRI(image)
		}
	}
	return runtimeapi.Signal_SIGNAL_SIGTERM
}
