package sandbox

import "testing"

func TestPodNamespacesAndHostname(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      PodConfig
		kinds    NamespaceSet
		hostname string
	}{
		{"own everything", PodConfig{Hostname: "web-0"}, NetNS | UTSNS | IPCNS, "web-0"},
		{"no hostname given", PodConfig{}, NetNS | UTSNS | IPCNS, "node1"},
		{"host network keeps the node's name", PodConfig{HostNetwork: true, Hostname: "web-0"}, IPCNS, "node1"},
		{"host IPC", PodConfig{HostIPC: true, Hostname: "web-0"}, NetNS | UTSNS, "web-0"},
		{"host network and IPC", PodConfig{HostNetwork: true, HostIPC: true}, 0, "node1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodNamespaces(tc.cfg); got != tc.kinds {
				t.Errorf("PodNamespaces = %v, want %v", got, tc.kinds)
			}
			if got := PodHostname(tc.cfg, "node1"); got != tc.hostname {
				t.Errorf("PodHostname = %q, want %q", got, tc.hostname)
			}
		})
	}
}
