package cni

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/skiffcri/skiff/errdefs"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfDir(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		wantNet  string
		wantFile string
		wantErr  bool
	}{
		{name: "empty"},
		{name: "ignores other extensions", files: map[string]string{"a.txt": `{}`}},
		{
			name: "lexically first wins",
			files: map[string]string{
				"20-b.conflist": `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}`,
				"10-a.conflist": `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}`,
			},
			wantNet: "a", wantFile: "10-a.conflist",
		},
		{
			name: "skips invalid",
			files: map[string]string{
				"00-bad.conflist": `{"name":`,
				"05-noplug.conf":  `{"cniVersion":"1.0.0","name":"x"}`,
				"10-ok.conf":      `{"cniVersion":"0.4.0","name":"single","type":"bridge"}`,
			},
			wantNet: "single", wantFile: "10-ok.conf",
		},
		{
			name:    "all invalid",
			files:   map[string]string{"00-bad.conflist": `nope`},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, d := range tt.files {
				writeFile(t, filepath.Join(dir, n), d)
			}
			list, file, err := loadConfDir(dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantNet == "" {
				if list != nil {
					t.Fatalf("loaded %q, want nothing", list.Name)
				}
				return
			}
			if list == nil || list.Name != tt.wantNet || filepath.Base(file) != tt.wantFile {
				t.Fatalf("got %v from %q, want %q from %q", list, file, tt.wantNet, tt.wantFile)
			}
		})
	}
}

// TestWatchConfDir checks that Ready follows a config appearing and going.
func TestWatchConfDir(t *testing.T) {
	dir := t.TempDir()
	m, err := New(context.Background(), Options{ConfDir: filepath.Join(dir, "net.d"), CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Ready(); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Ready on empty dir = %v, want failed precondition", err)
	}
	waitReady := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := m.Ready()
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Ready() = %v, want ready=%v", err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	conf := filepath.Join(dir, "net.d", "10-test.conflist")
	tmp := filepath.Join(dir, "net.d", ".tmp")
	writeFile(t, tmp, `{"cniVersion":"1.0.0","name":"w","plugins":[{"type":"bridge"}]}`)
	if err := os.Rename(tmp, conf); err != nil {
		t.Fatal(err)
	}
	waitReady(true)
	if name, _ := m.NetworkName(); name != "w" {
		t.Fatalf("network = %q, want w", name)
	}
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	waitReady(false)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{in: "1000", want: 1000},
		{in: "10M", want: 10_000_000},
		{in: "1.5k", want: 1500},
		{in: "1Ki", want: 1024},
		{in: "2Gi", want: 2 << 30},
		{in: "1P", want: 1e15},
		{in: "0.0001k", want: 1},
		{in: "", wantErr: true},
		{in: "-1M", wantErr: true},
		{in: "M", wantErr: true},
		{in: "10X", wantErr: true},
		{in: "100E", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseQuantity(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseQuantity(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCapabilityArgs(t *testing.T) {
	tests := []struct {
		name    string
		req     SetupRequest
		want    string // JSON
		wantErr bool
	}{
		{name: "none", want: `{}`},
		{
			name: "ports",
			req: SetupRequest{PortMappings: []PortMapping{
				{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
				{HostPort: 0, ContainerPort: 81},
				{HostPort: 53, ContainerPort: 53, Protocol: "UDP", HostIP: "127.0.0.1"},
			}},
			want: `{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"},{"containerPort":53,"hostIP":"127.0.0.1","hostPort":53,"protocol":"udp"}]}`,
		},
		{name: "bad proto", req: SetupRequest{PortMappings: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "ICMP"}}}, wantErr: true},
		{name: "bad port", req: SetupRequest{PortMappings: []PortMapping{{HostPort: 70000, ContainerPort: 1}}}, wantErr: true},
		{
			name: "bandwidth",
			req:  SetupRequest{Annotations: map[string]string{AnnotationIngressBandwidth: "1M", AnnotationEgressBandwidth: "2M", "other": "x"}},
			want: `{"bandwidth":{"egressBurst":2147483647,"egressRate":2000000,"ingressBurst":2147483647,"ingressRate":1000000}}`,
		},
		{name: "bandwidth too small", req: SetupRequest{Annotations: map[string]string{AnnotationIngressBandwidth: "10"}}, wantErr: true},
		{
			name: "ranges and dns",
			req:  SetupRequest{PodCIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}, DNS: &DNS{Servers: []string{"10.0.0.10"}, Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}}},
			want: `{"dns":{"options":["ndots:5"],"searches":["svc.cluster.local"],"servers":["10.0.0.10"]},"ipRanges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00:1::/64"}]]}`,
		},
		{name: "empty dns", req: SetupRequest{DNS: &DNS{}}, want: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capabilityArgs(tt.req)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				return
			}
			b, _ := json.Marshal(got)
			if string(b) != tt.want {
				t.Fatalf("got %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestConvertResult(t *testing.T) {
	raw := `{"cniVersion":"1.0.0",
	  "interfaces":[{"name":"skifft0","mac":"aa:aa:aa:aa:aa:aa"},{"name":"vethx"},{"name":"eth0","mac":"bb:bb:bb:bb:bb:bb","sandbox":"/run/ns/net"}],
	  "ips":[{"interface":2,"address":"fd00::5/64","gateway":"fd00::1"},{"interface":2,"address":"10.99.0.5/24","gateway":"10.99.0.1"},{"interface":0,"address":"10.99.0.1/24"}]}`
	res, err := types100.NewResult([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := convertResult(res, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("10.99.0.5"), netip.MustParseAddr("fd00::5")}
	if !reflect.DeepEqual(got.PodIPs, want) {
		t.Fatalf("PodIPs = %v, want %v", got.PodIPs, want)
	}
	if len(got.IPs) != 3 || got.IPs[1].Gateway != netip.MustParseAddr("10.99.0.1") || got.IPs[1].Interface != "eth0" {
		t.Fatalf("IPs = %+v", got.IPs)
	}
	if _, err := convertResult(res, "eth1"); err == nil {
		t.Fatal("want error for interface without IPs")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{cacheDir: dir}
	if err := os.MkdirAll(recordDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	list := []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","bridge":"b"}]}`)
	rec := &record{PodID: "abc", IfName: "eth0", NetNS: "/x", ListBytes: list,
		PluginBytes: [][]byte{[]byte(`{"type":"bridge","bridge":"b"}`), []byte(`{"type":"extra"}`)},
		Args:        [][2]string{{"IgnoreUnknown", "1"}}}
	if err := m.writeRecord(rec); err != nil {
		t.Fatal(err)
	}
	got, err := m.readRecord("abc", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := got.list()
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "n" || len(l.Plugins) != 2 || l.Plugins[1].Network.Type != "extra" {
		t.Fatalf("list = %+v", l)
	}
	if err := m.removeRecord("abc", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := m.removeRecord("abc", "eth0"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestTeardownWithoutSetupIsNoop(t *testing.T) {
	dir := t.TempDir()
	m, err := New(context.Background(), Options{ConfDir: filepath.Join(dir, "net.d"), CacheDir: filepath.Join(dir, "cache"), BinDirs: []string{filepath.Join(dir, "nobin")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Teardown(context.Background(), SetupRequest{PodID: "p1", NetNS: "/nonexistent"}); err != nil {
		t.Fatalf("Teardown = %v", err)
	}
	if err := m.Check(context.Background(), SetupRequest{PodID: "p1"}); !errdefs.IsNotFound(err) {
		t.Fatalf("Check = %v, want not found", err)
	}
	if _, err := m.Setup(context.Background(), SetupRequest{PodID: "p1", NetNS: "/x"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Setup without config = %v, want failed precondition", err)
	}
	if err := m.GC(context.Background(), nil); err != nil {
		t.Fatalf("GC = %v", err)
	}
}
