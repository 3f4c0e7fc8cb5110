package cri

import (
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStopSignal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config runtimeapi.Signal
		image  string
		want   syscall.Signal
		cri    runtimeapi.Signal
	}{
		{"default", 0, "", syscall.SIGTERM, runtimeapi.Signal_SIGNAL_SIGTERM},
		{"image SIG name", 0, "SIGINT", syscall.SIGINT, runtimeapi.Signal_SIGNAL_SIGINT},
		{"image bare name", 0, "quit", syscall.SIGQUIT, runtimeapi.Signal_SIGNAL_SIGQUIT},
		{"image number", 0, "9", syscall.SIGKILL, runtimeapi.Signal_SIGNAL_SIGKILL},
		{"image alias keeps its name", 0, "SIGCLD", syscall.SIGCHLD, runtimeapi.Signal_SIGNAL_SIGCLD},
		{"image real-time", 0, "SIGRTMIN+3", 37, runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3},
		{"image real-time max", 0, "RTMAX-1", 63, runtimeapi.Signal_SIGNAL_SIGRTMAXMINUS1},
		{"image real-time by number", 0, "40", 40, runtimeapi.Signal_SIGNAL_SIGRTMINPLUS6},
		{"image unknown falls back", 0, "SIGNOPE", syscall.SIGTERM, runtimeapi.Signal_SIGNAL_SIGTERM},
		{"image glibc-reserved number", 0, "33", 33, runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT},
		{"config wins over image", runtimeapi.Signal_SIGNAL_SIGUSR1, "SIGINT", syscall.SIGUSR1, runtimeapi.Signal_SIGNAL_SIGUSR1},
		{"config real-time", runtimeapi.Signal_SIGNAL_SIGRTMAX, "", 64, runtimeapi.Signal_SIGNAL_SIGRTMAX},
		{"config alias", runtimeapi.Signal_SIGNAL_SIGPOLL, "", syscall.SIGIO, runtimeapi.Signal_SIGNAL_SIGPOLL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtimeapi.ContainerConfig{StopSignal: tc.config}
			if got := stopSignal(cfg, tc.image); got != tc.want {
				t.Errorf("stopSignal = %d (%v), want %d (%v)", got, got, tc.want, tc.want)
			}
			if got := criStopSignal(cfg, tc.image); got != tc.cri {
				t.Errorf("criStopSignal = %v, want %v", got, tc.cri)
			}
		})
	}
}

// Every CRI signal maps to a number and back to itself or, for aliases,
// to the same number.
func TestSignalTable(t *testing.T) {
	for v, name := range runtimeapi.Signal_name {
		sig := runtimeapi.Signal(v)
		if sig == runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
			continue
		}
		n, ok := signalFromCRI(sig)
		if !ok || n <= 0 || n > 64 {
			t.Errorf("%s: number %d, %v", name, n, ok)
			continue
		}
		back := signalNumberToCRI(n)
		if m, _ := signalFromCRI(back); m != n {
			t.Errorf("%s = %d maps back to %v = %d", name, n, back, m)
		}
		if got := signalToCRI(criSignalName(sig)); got != sig {
			t.Errorf("signalToCRI(%q) = %v, want %v", criSignalName(sig), got, sig)
		}
	}
}
