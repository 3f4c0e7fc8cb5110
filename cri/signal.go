package cri

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/internal/signame"
)

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
	return signame.Parse(criSignalName(sig))
}

// signalToCRI is the CRI enum of a signal name or number, preferring the
// name as given (SIGCLD stays SIGCLD); RUNTIME_DEFAULT when the enum has
// no value for it (32 and 33, which glibc reserves).
func signalToCRI(name string) runtimeapi.Signal {
	n, ok := signame.Parse(name)
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
	case n == signame.RTMin:
		name = "SIGRTMIN"
	case n == signame.RTMax:
		name = "SIGRTMAX"
	case n > signame.RTMin && n <= signame.RTMin+15:
		name = "SIGRTMINPLUS" + strconv.Itoa(int(n)-signame.RTMin)
	case n < signame.RTMax && n >= signame.RTMax-14:
		name = "SIGRTMAXMINUS" + strconv.Itoa(signame.RTMax-int(n))
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
		if n, ok := signame.Parse(image); ok {
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
		if _, ok := signame.Parse(image); ok {
			return signalToCRI(image)
		}
	}
	return runtimeapi.Signal_SIGNAL_SIGTERM
}
