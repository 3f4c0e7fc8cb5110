// Package cni_test runs package cni against the real bridge, host-local,
// portmap and loopback plugins in network namespaces made by package
// sandbox. Needs root, iptables and the plugins in /usr/lib/cni.
//
// Every test uses its own bridge (skifft<N>), subnet (10.99.<N>.0/24),
// network name and host-local data dir, and removes namespaces, bridge,
// veths and its iptables rules at the end, also on failure.
package cni_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffcri/skiff/cni"
	"github.com/skiffcri/skiff/sandbox"
)

const pluginDir = "/usr/lib/cni"

// testNet is one test's private network.
type testNet struct {
	name    string // CNI network name
	bridge  string
	subnet  netip.Prefix
	gateway netip.Addr
	dataDir string // host-local data dir
	confDir string
	cache   string
	base    string
	podIDs  []string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(pluginDir, p)); err != nil {
			t.Skipf("CNI plugin %s missing: %v", p, err)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables missing")
	}
}

// newTestNet prepares dirs and registers the clean-up of everything the
// plugins may create on the host for this network.
func newTestNet(t *testing.T, n int) *testNet {
	t.Helper()
	base := t.TempDir()
	tn := &testNet{
		name:    fmt.Sprintf("skiff-test-%d", n),
		bridge:  fmt.Sprintf("skifft%d", n),
		subnet:  netip.MustParsePrefix(fmt.Sprintf("10.99.%d.0/24", n)),
		gateway: netip.MustParseAddr(fmt.Sprintf("10.99.%d.1", n)),
		dataDir: filepath.Join(base, "ipam"),
		confDir: filepath.Join(base, "net.d"),
		cache:   filepath.Join(base, "cache"),
		base:    base,
	}
	if err := os.MkdirAll(tn.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tn.cleanupIptables(t)
		if linkExists(tn.bridge) {
			if out, err := exec.Command("ip", "link", "del", tn.bridge).CombinedOutput(); err != nil {
				t.Errorf("cleanup: delete bridge %s: %v: %s", tn.bridge, err, out)
			}
		}
	})
	return tn
}

// conflist renders the test network; extra plugins are appended after
// bridge and portmap.
func (tn *testNet) conflist(name, bridge string, extra ...string) string {
	plugins := []string{
		fmt.Sprintf(`{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":true,"hairpinMode":true,
		  "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]],"routes":[{"dst":"0.0.0.0/0"}]}}`,
			bridge, tn.dataDir, tn.subnet.String()),
		`{"type":"portmap","capabilities":{"portMappings":true}}`,
	}
	plugins = append(plugins, extra...)
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, name, strings.Join(plugins, ","))
}

func (tn *testNet) writeConf(t *testing.T, file, data string) {
	t.Helper()
	tmp := filepath.Join(tn.confDir, ".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(tn.confDir, file)); err != nil {
		t.Fatal(err)
	}
}

// manager starts a Manager on the test dirs and waits until it has loaded
// the network named want.
func (tn *testNet) manager(t *testing.T, want string) *cni.Manager {
	t.Helper()
	m, err := cni.New(context.Background(), cni.Options{ConfDir: tn.confDir, BinDirs: []string{pluginDir}, CacheDir: tn.cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if name, _ := m.NetworkName(); name == want && m.Ready() == nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("network %q not loaded: %v", want, m.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pod creates a pinned netns and registers its teardown with m (if given)
// and removal.
func (tn *testNet) pod(t *testing.T, m *cni.Manager, id string) (cni.SetupRequest, sandbox.Namespaces) {
	t.Helper()
	tn.podIDs = append(tn.podIDs, id)
	dir := filepath.Join(tn.base, "pods", id)
	ns, err := sandbox.CreateNamespaces(context.Background(), dir, sandbox.NetNS, "")
	if err != nil {
		t.Fatal(err)
	}
	req := cni.SetupRequest{PodID: id, NetNS: ns.Net, PodName: id, PodNamespace: "skiff-test", PodUID: "uid-" + id}
	t.Cleanup(func() {
		if m != nil {
			if err := m.Teardown(context.Background(), req); err != nil {
				t.Errorf("cleanup: teardown %s: %v", id, err)
			}
		}
		if err := sandbox.RemoveNamespaces(dir); err != nil {
			t.Errorf("cleanup: remove netns of %s: %v", id, err)
		}
	})
	return req, ns
}

// allocated lists the IPs host-local holds for the network.
func (tn *testNet) allocated(t *testing.T, network string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(tn.dataDir, network))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// natRulesMentioning returns the nat rules (iptables -S form) that mention
// any of the strings.
func natRulesMentioning(t *testing.T, subs ...string) []string {
	t.Helper()
	out, err := exec.Command("iptables", "-t", "nat", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S: %v: %s", err, out)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, s := range subs {
			if s != "" && strings.Contains(l, s) {
				rules = append(rules, l)
				break
			}
		}
	}
	return rules
}

// cleanupIptables removes nat rules of this test's pods and network (left
// only when a test failed before Teardown), the per-pod chains they jump to,
// and the portmap plugin's shared CNI-HOSTPORT-* chains when nothing uses
// them any more.
func (tn *testNet) cleanupIptables(t *testing.T) {
	marks := append([]string{tn.subnet.String(), fmt.Sprintf("%q", tn.name)}, tn.podIDs...)
	out, err := exec.Command("iptables", "-t", "nat", "-S").Output()
	if err != nil {
		t.Errorf("cleanup: iptables -S: %v", err)
		return
	}
	var chains []string
	for _, l := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(l, "-N "); ok {
			chains = append(chains, c)
		}
	}
	targets := map[string]bool{}
	for _, chain := range append([]string{"PREROUTING", "OUTPUT", "POSTROUTING"}, chains...) {
		out, err := exec.Command("iptables", "-t", "nat", "-L", chain, "-n", "--line-numbers").Output()
		if err != nil {
			continue
		}
		lines := strings.Split(string(out), "\n")
		// Delete from the bottom so line numbers stay valid.
		for i := len(lines) - 1; i >= 2; i-- {
			f := strings.Fields(lines[i])
			if len(f) < 2 {
				continue
			}
			hit := false
			for _, m := range marks {
				if m != "" && strings.Contains(lines[i], strings.Trim(m, `"`)) {
					hit = true
				}
			}
			if !hit {
				continue
			}
			if strings.HasPrefix(f[1], "CNI-") {
				targets[f[1]] = true
			}
			if out, err := exec.Command("iptables", "-t", "nat", "-D", chain, f[0]).CombinedOutput(); err != nil {
				t.Errorf("cleanup: iptables -D %s %s: %v: %s", chain, f[0], err, out)
			} else {
				t.Logf("cleanup: removed leftover nat rule in %s: %s", chain, lines[i])
			}
		}
	}
	for c := range targets {
		if strings.HasPrefix(c, "CNI-HOSTPORT-") {
			continue
		}
		exec.Command("iptables", "-t", "nat", "-F", c).Run()
		exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
	removeIdleHostportChains(t)
}

// removeIdleHostportChains deletes portmap's shared chains when they hold no
// rule of any pod (another runtime on this host may still use them
// otherwise).
func removeIdleHostportChains(t *testing.T) {
	out, err := exec.Command("iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Output()
	if err != nil {
		return // chain absent
	}
	if strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
		return // has rules: in use
	}
	all, _ := exec.Command("iptables", "-t", "nat", "-S").Output()
	for _, l := range strings.Split(string(all), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "-A" || strings.HasPrefix(f[1], "CNI-HOSTPORT-") {
			continue
		}
		if strings.Contains(l, "-j CNI-HOSTPORT-") {
			args := append([]string{"-t", "nat", "-D"}, f[1:]...)
			if out, err := exec.Command("iptables", unquoteArgs(args)...).CombinedOutput(); err != nil {
				t.Logf("cleanup: %v: %v: %s", args, err, out)
			}
		}
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"} {
		exec.Command("iptables", "-t", "nat", "-F", c).Run()
		exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
}

// unquoteArgs undoes iptables -S quoting of comment arguments.
func unquoteArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, `"`) {
			j := i
			for !strings.HasSuffix(args[j], `"`) || (j == i && len(a) == 1) {
				j++
				if j >= len(args) {
					j = len(args) - 1
					break
				}
			}
			joined := strings.Join(args[i:j+1], " ")
			if s, err := strconv.Unquote(joined); err == nil {
				a = s
			}
			i = j
		}
		out = append(out, a)
	}
	return out
}

// listen opens a TCP listener inside ns that answers each connection with
// reply, until the test ends.
func listen(t *testing.T, ns sandbox.Namespaces, addr, reply string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in pod: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	return ln
}

// dial connects to addr (from ns, or the host when ns is zero) and returns
// what the server sent.
func dial(ns sandbox.Namespaces, addr string) (string, error) {
	var got string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

func hostVeth(res *cni.Result, bridge string) string {
	for _, i := range res.Interfaces {
		if i.Sandbox == "" && i.Name != bridge {
			return i.Name
		}
	}
	return ""
}

func TestSetupTwoPodsAndHostPort(t *testing.T) {
	needRoot(t)
	tn := newTestNet(t, 71)
	tn.writeConf(t, "10-test.conflist", tn.conflist(tn.name, tn.bridge, `{"type":"loopback"}`))
	m := tn.manager(t, tn.name)
	ctx := context.Background()

	reqA, nsA := tn.pod(t, m, "skifftestpoda")
	reqB, nsB := tn.pod(t, m, "skifftestpodb")
	const hostPort = 18071
	reqA.PortMappings = []cni.PortMapping{{HostPort: hostPort, ContainerPort: 8080, Protocol: "TCP"}}

	resA, err := m.Setup(ctx, reqA)
	if err != nil {
		t.Fatalf("Setup A: %v", err)
	}
	resB, err := m.Setup(ctx, reqB)
	if err != nil {
		t.Fatalf("Setup B: %v", err)
	}
	ipA, ipB := resA.PodIPs[0], resB.PodIPs[0]
	t.Logf("pod A %v, pod B %v", resA.PodIPs, resB.PodIPs)
	for _, ip := range []netip.Addr{ipA, ipB} {
		if !tn.subnet.Contains(ip) || ip == tn.gateway {
			t.Fatalf("pod IP %v not a host address of %v", ip, tn.subnet)
		}
	}
	if ipA == ipB {
		t.Fatalf("both pods got %v", ipA)
	}
	if got := tn.allocated(t, tn.name); len(got) != 2 {
		t.Fatalf("host-local holds %v, want 2 IPs", got)
	}
	if err := m.Check(ctx, reqB); err != nil {
		t.Errorf("Check B: %v", err)
	}
	// portmap before v1.2.0 fails CHECK of IPv4-only port mappings while
	// looking for IPv6 rules (containernetworking/plugins#819).
	if err := m.Check(ctx, reqA); err != nil {
		if strings.Contains(err.Error(), "could not check ipv6 dnat") {
			t.Logf("Check A hit the portmap IPv6 CHECK bug: %v", err)
		} else {
			t.Errorf("Check A: %v", err)
		}
	}

	// The pod side has the IP on eth0 and a working loopback.
	var addrs []net.Addr
	if err := nsA.Do(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err = ifc.Addrs()
		return err
	}); err != nil {
		t.Fatalf("eth0 in pod A: %v", err)
	}
	if !strings.Contains(fmt.Sprint(addrs), ipA.String()+"/24") {
		t.Errorf("pod A eth0 addresses %v lack %v/24", addrs, ipA)
	}
	listen(t, nsA, "0.0.0.0:8080", "hello from A")
	if got, err := dial(nsA, "127.0.0.1:8080"); err != nil || got != "hello from A" {
		t.Errorf("pod A to its own loopback: %q, %v", got, err)
	}

	// Pod to pod.
	if got, err := dial(nsB, netip.AddrPortFrom(ipA, 8080).String()); err != nil || got != "hello from A" {
		t.Errorf("pod B to pod A: %q, %v", got, err)
	}
	if out, err := exec.Command("nsenter", "--net="+nsB.Net, "/usr/bin/busybox", "ping", "-c", "1", "-W", "5", ipA.String()).CombinedOutput(); err != nil {
		t.Errorf("ping A from B: %v: %s", err, out)
	}

	// hostPort from the host, through the bridge gateway address.
	gw := netip.AddrPortFrom(tn.gateway, hostPort).String()
	if got, err := dial(sandbox.Namespaces{}, gw); err != nil || got != "hello from A" {
		t.Errorf("host to hostPort via %s: %q, %v", gw, got, err)
	}
	// And through every other local IPv4 address of the host; 127.0.0.1
	// works only with route_localnet, which portmap sets on the bridge, so
	// it is reported rather than required.
	ifaddrs, _ := net.InterfaceAddrs()
	for _, a := range ifaddrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is4() || tn.subnet.Contains(p.Addr()) || strings.HasPrefix(p.Addr().String(), "10.99.") {
			continue
		}
		addr := netip.AddrPortFrom(p.Addr(), hostPort).String()
		got, err := dial(sandbox.Namespaces{}, addr)
		switch {
		case p.Addr().IsLoopback():
			t.Logf("host to hostPort via %s: %q, %v", addr, got, err)
		case err != nil || got != "hello from A":
			t.Errorf("host to hostPort via %s: %q, %v", addr, got, err)
		}
	}
	if rules := natRulesMentioning(t, reqA.PodID); len(rules) == 0 {
		t.Errorf("no nat rules for pod A's hostPort")
	}

	// Teardown releases the IP, the veth and the port mapping; twice is fine.
	vethA := hostVeth(resA, tn.bridge)
	if vethA == "" || !linkExists(vethA) {
		t.Fatalf("host veth of pod A %q not found in %+v", vethA, resA.Interfaces)
	}
	if err := m.Teardown(ctx, reqA); err != nil {
		t.Fatalf("Teardown A: %v", err)
	}
	if err := m.Teardown(ctx, reqA); err != nil {
		t.Fatalf("second Teardown A: %v", err)
	}
	if got := tn.allocated(t, tn.name); len(got) != 1 || got[0] != ipB.String() {
		t.Errorf("after teardown of A host-local holds %v, want only %v", got, ipB)
	}
	if linkExists(vethA) {
		t.Errorf("veth %s still exists", vethA)
	}
	if rules := natRulesMentioning(t, reqA.PodID); len(rules) != 0 {
		t.Errorf("nat rules of pod A left: %q", rules)
	}
	if err := nsA.Do(func() error { _, err := net.InterfaceByName("eth0"); return err }); err == nil {
		t.Errorf("eth0 still in pod A after teardown")
	}
}

// TestSetupFailureRollsBack makes the last plugin of the chain fail: Setup
// must return the error and leave no IP, veth, iptables rule or record.
func TestSetupFailureRollsBack(t *testing.T) {
	needRoot(t)
	tn := newTestNet(t, 72)
	tn.writeConf(t, "10-test.conflist", tn.conflist(tn.name, tn.bridge, `{"type":"skiff-test-nonexistent-plugin"}`))
	m := tn.manager(t, tn.name)
	req, ns := tn.pod(t, m, "skifftestfail")
	req.PortMappings = []cni.PortMapping{{HostPort: 18072, ContainerPort: 80}}

	res, err := m.Setup(context.Background(), req)
	if err == nil {
		t.Fatalf("Setup succeeded with a missing plugin: %+v", res)
	}
	t.Logf("Setup error (expected): %v", err)
	if got := tn.allocated(t, tn.name); len(got) != 0 {
		t.Errorf("IPs left allocated: %v", got)
	}
	if rules := natRulesMentioning(t, req.PodID); len(rules) != 0 {
		t.Errorf("nat rules left: %q", rules)
	}
	if err := ns.Do(func() error { _, err := net.InterfaceByName("eth0"); return err }); err == nil {
		t.Errorf("eth0 left in the pod netns")
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", tn.bridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("veths left on %s: %s", tn.bridge, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(tn.cache, "skiff-attachments")); len(entries) != 0 {
		t.Errorf("attachment records left: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(tn.cache, "results")); len(entries) != 0 {
		t.Errorf("libcni cache entries left: %v", entries)
	}
}

// TestTeardownAfterRestartAndConfigChange sets a pod up, "restarts" (a new
// Manager on the same cache dir) with a different network config in place,
// and tears down: DEL must use the original network, so the IP and veth go.
// A second pod is torn down after its netns is already gone.
func TestTeardownAfterRestartAndConfigChange(t *testing.T) {
	needRoot(t)
	tn := newTestNet(t, 73)
	tn.writeConf(t, "10-test.conflist", tn.conflist(tn.name, tn.bridge))
	m1 := tn.manager(t, tn.name)
	ctx := context.Background()
	reqX, _ := tn.pod(t, m1, "skifftestpodx")
	reqX.PortMappings = []cni.PortMapping{{HostPort: 18073, ContainerPort: 80}}
	resX, err := m1.Setup(ctx, reqX)
	if err != nil {
		t.Fatalf("Setup X: %v", err)
	}
	reqY, nsY := tn.pod(t, m1, "skifftestpody")
	resY, err := m1.Setup(ctx, reqY)
	if err != nil {
		t.Fatalf("Setup Y: %v", err)
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}

	// A different network takes over the conf dir.
	os.Remove(filepath.Join(tn.confDir, "10-test.conflist"))
	tn.writeConf(t, "05-other.conflist", tn.conflist("skiff-test-other", "skifft74"))
	t.Cleanup(func() {
		if linkExists("skifft74") {
			exec.Command("ip", "link", "del", "skifft74").Run()
		}
	})
	m2 := tn.manager(t, "skiff-test-other")

	if err := m2.Teardown(ctx, reqX); err != nil {
		t.Fatalf("Teardown X after restart: %v", err)
	}
	if linkExists(hostVeth(resX, tn.bridge)) {
		t.Errorf("veth of X left")
	}
	if rules := natRulesMentioning(t, reqX.PodID); len(rules) != 0 {
		t.Errorf("nat rules of X left: %q", rules)
	}

	// Y: netns removed before teardown (e.g. a crash between the steps).
	if err := sandbox.RemoveNamespaces(filepath.Dir(nsY.Net)); err != nil {
		t.Fatal(err)
	}
	if err := m2.Teardown(ctx, reqY); err != nil {
		t.Fatalf("Teardown Y without netns: %v", err)
	}
	// The bridge plugin learns which masquerade rules to remove from the
	// addresses of the pod's interface, so without the netns they stay:
	// callers must tear down before removing the netns.
	if rules := natRulesMentioning(t, reqY.PodID); len(rules) != 0 {
		t.Logf("known bridge plugin limitation: masquerade rules of Y left without its netns: %d rules", len(rules))
	}
	if got := tn.allocated(t, tn.name); len(got) != 0 {
		t.Errorf("IPs left allocated: %v (X %v, Y %v)", got, resX.PodIPs, resY.PodIPs)
	}
	if linkExists("skifft74") {
		t.Errorf("the new network was used for DEL")
	}
}

// TestGCReleasesStaleAttachments sets up two pods and garbage-collects with
// only one still valid.
func TestGCReleasesStaleAttachments(t *testing.T) {
	needRoot(t)
	tn := newTestNet(t, 75)
	tn.writeConf(t, "10-test.conflist", tn.conflist(tn.name, tn.bridge))
	m := tn.manager(t, tn.name)
	ctx := context.Background()
	reqKeep, _ := tn.pod(t, m, "skifftestkeep")
	reqGone, _ := tn.pod(t, m, "skifftestgone")
	resKeep, err := m.Setup(ctx, reqKeep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Setup(ctx, reqGone); err != nil {
		t.Fatal(err)
	}
	if err := m.GC(ctx, []string{reqKeep.PodID}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := tn.allocated(t, tn.name); len(got) != 1 || got[0] != resKeep.PodIPs[0].String() {
		t.Errorf("after GC host-local holds %v, want only %v", got, resKeep.PodIPs[0])
	}
	if err := m.Check(ctx, reqKeep); err != nil {
		t.Errorf("Check of kept pod: %v", err)
	}
	if err := m.Status(ctx); err != nil {
		t.Errorf("Status: %v", err)
	}
}

// TestDualStack checks that a pod on a network with an IPv4 and an IPv6
// range gets both addresses, IPv4 first.
func TestDualStack(t *testing.T) {
	needRoot(t)
	tn := newTestNet(t, 76)
	v6 := netip.MustParsePrefix("fd99:76::/64")
	tn.writeConf(t, "10-dual.conflist", fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
	  {"type":"bridge","bridge":%q,"isGateway":true,
	   "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}],[{"subnet":%q}]]}},
	  {"type":"loopback"}]}`, tn.name, tn.bridge, tn.dataDir, tn.subnet, v6))
	m := tn.manager(t, tn.name)
	req, ns := tn.pod(t, m, "skifftestdual")
	res, err := m.Setup(context.Background(), req)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if len(res.PodIPs) != 2 || !tn.subnet.Contains(res.PodIPs[0]) || !v6.Contains(res.PodIPs[1]) {
		t.Fatalf("PodIPs = %v, want one from %v then one from %v", res.PodIPs, tn.subnet, v6)
	}
	var addrs []net.Addr
	if err := ns.Do(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		addrs, err = ifc.Addrs()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(addrs), res.PodIPs[1].String()+"/64") {
		t.Errorf("eth0 addresses %v lack %v/64", addrs, res.PodIPs[1])
	}
	if err := m.Teardown(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := tn.allocated(t, tn.name); len(got) != 0 {
		t.Errorf("IPs left: %v", got)
	}
}

// TestBandwidth checks that the bandwidth annotations reach the bandwidth
// plugin, which shapes the pod's host-side veth.
func TestBandwidth(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat(filepath.Join(pluginDir, "bandwidth")); err != nil {
		t.Skip("bandwidth plugin missing")
	}
	tn := newTestNet(t, 77)
	tn.writeConf(t, "10-bw.conflist", fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
	  {"type":"bridge","bridge":%q,"isGateway":true,
	   "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}},
	  {"type":"bandwidth","capabilities":{"bandwidth":true}}]}`, tn.name, tn.bridge, tn.dataDir, tn.subnet))
	m := tn.manager(t, tn.name)
	req, _ := tn.pod(t, m, "skifftestbw")
	req.Annotations = map[string]string{cni.AnnotationIngressBandwidth: "10M", cni.AnnotationEgressBandwidth: "20M"}
	res, err := m.Setup(context.Background(), req)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	veth := hostVeth(res, tn.bridge)
	var ifbs []string
	for _, i := range res.Interfaces {
		if i.Sandbox == "" && i.Name != tn.bridge && i.Name != veth {
			ifbs = append(ifbs, i.Name)
		}
	}
	t.Cleanup(func() {
		for _, ifb := range ifbs {
			if linkExists(ifb) {
				exec.Command("ip", "link", "del", ifb).Run()
			}
		}
	})
	out, err := exec.Command("tc", "qdisc", "show", "dev", veth).CombinedOutput()
	if err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
	// Ingress to the pod is shaped on the host veth's egress.
	if !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "rate 10Mbit") {
		t.Errorf("qdiscs of %s: %s; want tbf rate 10Mbit", veth, out)
	}
	if len(ifbs) == 0 {
		t.Errorf("no ifb device for egress shaping in %+v", res.Interfaces)
	}
	if err := m.Teardown(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, ifb := range ifbs {
		if linkExists(ifb) {
			t.Errorf("ifb %s left after teardown", ifb)
		}
	}
}
