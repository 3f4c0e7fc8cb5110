package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

func TestSysctlNamespace(t *testing.T) {
	tests := []struct {
		name    string
		want    NamespaceSet
		wantErr bool
	}{
		{name: "net.ipv4.ip_forward", want: NetNS},
		{name: "net/ipv4/conf/eth0.100/rp_filter", want: NetNS},
		{name: "net.ipv4.conf.eth0/100.rp_filter", want: NetNS},
		{name: "kernel.shm_rmid_forced", want: IPCNS},
		{name: "kernel.msgmax", want: IPCNS},
		{name: "fs.mqueue.msg_max", want: IPCNS},
		{name: "kernel.domainname", want: UTSNS},
		{name: "kernel.hostname", wantErr: true},
		{name: "kernel.pid_max", wantErr: true},
		{name: "vm.overcommit_memory", wantErr: true},
		{name: "net..ipv4", wantErr: true},
		{name: "net/../../kernel/pid_max", wantErr: true},
		{name: "net.//.kernel.core_pattern", wantErr: true},
		{name: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SysctlNamespace(tt.name)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestApplySysctlsRefusesHostNamespaces(t *testing.T) {
	tests := []struct {
		name string
		ns   Namespaces
		sys  map[string]string
	}{
		{name: "host network", ns: Namespaces{IPC: "/x"}, sys: map[string]string{"net.ipv4.ip_forward": "1"}},
		{name: "host ipc", ns: Namespaces{Net: "/x"}, sys: map[string]string{"kernel.shm_rmid_forced": "1"}},
		{name: "not namespaced", ns: Namespaces{Net: "/x", IPC: "/y", UTS: "/z"}, sys: map[string]string{"kernel.pid_max": "1"}},
		{name: "newline", ns: Namespaces{Net: "/x"}, sys: map[string]string{"net.ipv4.ip_forward": "1\n0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ApplySysctls(tt.ns, tt.sys); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteHostname(t *testing.T) {
	dir := t.TempDir()
	if err := WriteHostname(dir, "pod-a"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, HostnameFile)); got != "pod-a\n" {
		t.Fatalf("hostname = %q", got)
	}
	for _, bad := range []string{"", "a b", "a\nb", string(make([]byte, 65))} {
		if err := WriteHostname(dir, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("WriteHostname(%q) = %v, want invalid argument", bad, err)
		}
	}
}

func TestWriteHosts(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hostFile, []byte("10.0.0.1 myhost"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		hostNetwork bool
		hostPath    string
		extra       []HostEntry
		want        string
		wantErr     bool
	}{
		{name: "pod network", want: defaultHosts},
		{name: "pod network with ip", extra: []HostEntry{{IP: "10.99.0.5", Names: []string{"pod-a"}}}, want: defaultHosts + "10.99.0.5\tpod-a\n"},
		{name: "host network", hostNetwork: true, hostPath: hostFile, want: "10.0.0.1 myhost\n"},
		{name: "host network, no host file", hostNetwork: true, hostPath: "/nonexistent", want: defaultHosts},
		{name: "bad entry", extra: []HostEntry{{IP: "1.2.3.4", Names: []string{"a b"}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := writeHosts(dir, tt.hostNetwork, tt.extra, tt.hostPath)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if got := readFile(t, filepath.Join(dir, HostsFile)); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestWriteResolvConf(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(hostFile, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dns      *DNSConfig
		hostPath string
		want     string
		wantErr  bool
	}{
		{name: "nil copies host", hostPath: hostFile, want: "nameserver 192.0.2.53\n"},
		{name: "empty copies host", dns: &DNSConfig{}, hostPath: hostFile, want: "nameserver 192.0.2.53\n"},
		{name: "no host file", hostPath: "/nonexistent", want: ""},
		{
			name: "full",
			dns:  &DNSConfig{Servers: []string{"10.96.0.10", "fd00::10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5", "edns0"}},
			want: "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::10\noptions ndots:5 edns0\n",
		},
		{name: "servers only", dns: &DNSConfig{Servers: []string{"1.1.1.1"}}, want: "nameserver 1.1.1.1\n"},
		{name: "injection", dns: &DNSConfig{Servers: []string{"1.1.1.1\nnameserver 6.6.6.6"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := writeResolvConf(dir, tt.dns, tt.hostPath)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			path := filepath.Join(dir, ResolvConfFile)
			if got := readFile(t, path); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != 0o644 {
				t.Fatalf("stat = %v, %v; want mode 0644", st, err)
			}
		})
	}
}
