package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/skiffcri/skiff/errdefs"
)

// fakeEnv is a conf dir, cache dir and bin dir of shell-script plugins that
// log every call, so the ADD/DEL sequencing can be tested without root.
type fakeEnv struct {
	dir, confDir, cacheDir, binDir, log string
}

func newFakeEnv(t *testing.T) *fakeEnv {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	e := &fakeEnv{
		dir:      dir,
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: filepath.Join(dir, "cache"),
		binDir:   filepath.Join(dir, "bin"),
		log:      filepath.Join(dir, "calls.log"),
	}
	for _, d := range []string{e.confDir, e.binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.plugin(t, "fakeip", "ok", "ok")
	e.plugin(t, "fakeport", "ok", "ok")
	e.plugin(t, "fakefail", "fail", "ok")
	e.plugin(t, "fakedelfail", "ok", "fail")
	return e
}

// plugin writes a fake plugin; add and del are "ok" or "fail".
func (e *fakeEnv) plugin(t *testing.T, name, add, del string) {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
stdin=$(cat)
n=$(basename "$0")
echo "$CNI_COMMAND $n $CNI_CONTAINERID $CNI_IFNAME" >> %[1]q
printf '%%s' "$stdin" > %[2]q/"$n.$CNI_COMMAND.stdin"
printf '%%s' "$CNI_ARGS" > %[2]q/"$n.$CNI_COMMAND.args"
fail() { echo '{"cniVersion":"1.0.0","code":100,"msg":"'"$n $CNI_COMMAND"' failed on purpose"}'; exit 1; }
case "$CNI_COMMAND" in
ADD)
	if [ %[3]q = fail ]; then fail; fi
	echo '{"cniVersion":"1.0.0","interfaces":[{"name":"skf0"},{"name":"'"$CNI_IFNAME"'","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"interface":1,"address":"fd00::3/64"},{"interface":1,"address":"10.1.2.3/24","gateway":"10.1.2.1"},{"interface":0,"address":"10.1.2.1/24"}]}'
	;;
DEL)
	if [ %[4]q = fail ]; then fail; fi
	;;
CHECK) ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
exit 0
`, e.log, e.dir, add, del)
	if err := os.WriteFile(filepath.Join(e.binDir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (e *fakeEnv) conf(t *testing.T, file, name string, plugins ...string) {
	t.Helper()
	var ps []string
	for _, p := range plugins {
		caps := ""
		if p == "fakeport" {
			caps = `,"capabilities":{"portMappings":true,"bandwidth":true}`
		}
		ps = append(ps, fmt.Sprintf(`{"type":%q%s}`, p, caps))
	}
	data := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, name, strings.Join(ps, ","))
	tmp := filepath.Join(e.confDir, ".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.confDir, file)); err != nil {
		t.Fatal(err)
	}
}

func (e *fakeEnv) manager(t *testing.T, want string) *Manager {
	t.Helper()
	m, err := New(context.Background(), Options{ConfDir: e.confDir, CacheDir: e.cacheDir, BinDirs: []string{e.binDir}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if name, _ := m.NetworkName(); name == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("network %q not loaded: %v", want, m.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// calls returns and clears the call log.
func (e *fakeEnv) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(e.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(e.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (e *fakeEnv) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *fakeEnv) records(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(recordDir(e.cacheDir))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestFakeSetupTeardownAcrossRestartAndConfigChange(t *testing.T) {
	e := newFakeEnv(t)
	e.conf(t, "10-a.conflist", "neta", "fakeip", "fakeport")
	m := e.manager(t, "neta")
	ctx := context.Background()
	req := SetupRequest{
		PodID: "pod1", NetNS: "/run/fake/ns", PodName: "web", PodNamespace: "default", PodUID: "u1",
		PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"}},
		Annotations:  map[string]string{AnnotationIngressBandwidth: "1M"},
	}
	res, err := m.Setup(ctx, req)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if want := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::3")}; !reflect.DeepEqual(res.PodIPs, want) {
		t.Errorf("PodIPs = %v, want %v", res.PodIPs, want)
	}
	if got, want := e.calls(t), []string{"ADD fakeip pod1 eth0", "ADD fakeport pod1 eth0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if in := e.read(t, "fakeip.ADD.stdin"); strings.Contains(in, "runtimeConfig") {
		t.Errorf("fakeip got runtimeConfig without declaring capabilities: %s", in)
	}
	in := e.read(t, "fakeport.ADD.stdin")
	for _, want := range []string{`"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]`, `"ingressRate":1000000`, `"prevResult"`, `"name":"neta"`} {
		if !strings.Contains(in, want) {
			t.Errorf("fakeport ADD stdin lacks %s: %s", want, in)
		}
	}
	args := e.read(t, "fakeip.ADD.args")
	for _, want := range []string{"IgnoreUnknown=1", "K8S_POD_NAMESPACE=default", "K8S_POD_NAME=web", "K8S_POD_INFRA_CONTAINER_ID=pod1", "K8S_POD_UID=u1"} {
		if !strings.Contains(args, want) {
			t.Errorf("CNI_ARGS %q lacks %s", args, want)
		}
	}
	if _, err := m.Setup(ctx, req); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Setup = %v, want already exists", err)
	}
	if err := m.Check(ctx, SetupRequest{PodID: "pod1"}); err != nil {
		t.Errorf("Check: %v", err)
	}
	e.calls(t)

	// Restart with another network in place: DEL still goes to neta.
	m.Close()
	os.Remove(filepath.Join(e.confDir, "10-a.conflist"))
	e.conf(t, "10-b.conflist", "netb", "fakeport")
	m2 := e.manager(t, "netb")
	if err := m2.Teardown(ctx, SetupRequest{PodID: "pod1"}); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if got, want := e.calls(t), []string{"DEL fakeport pod1 eth0", "DEL fakeip pod1 eth0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	del := e.read(t, "fakeport.DEL.stdin")
	for _, want := range []string{`"name":"neta"`, `"portMappings"`, `"prevResult"`} {
		if !strings.Contains(del, want) {
			t.Errorf("DEL stdin lacks %s: %s", want, del)
		}
	}
	if n := e.records(t); n != 0 {
		t.Errorf("%d records left", n)
	}
	if err := m2.Teardown(ctx, SetupRequest{PodID: "pod1"}); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if got := e.calls(t); len(got) != 0 {
		t.Errorf("second Teardown ran plugins: %q", got)
	}
}

func TestFakeSetupFailureRunsDel(t *testing.T) {
	e := newFakeEnv(t)
	e.conf(t, "10-a.conflist", "neta", "fakeip", "fakefail", "fakeport")
	m := e.manager(t, "neta")
	_, err := m.Setup(context.Background(), SetupRequest{PodID: "pod2", NetNS: "/run/fake/ns"})
	if err == nil || !strings.Contains(err.Error(), "failed on purpose") {
		t.Fatalf("Setup = %v, want the plugin's failure", err)
	}
	want := []string{"ADD fakeip pod2 eth0", "ADD fakefail pod2 eth0", "DEL fakeport pod2 eth0", "DEL fakefail pod2 eth0", "DEL fakeip pod2 eth0"}
	if got := e.calls(t); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n := e.records(t); n != 0 {
		t.Errorf("%d records left", n)
	}
}

// TestFakeDelFailureStillReachesEarlierPlugins checks that a plugin failing
// DEL does not stop the plugins before it from releasing their state, and
// that the attachment is kept for a retry.
func TestFakeDelFailureStillReachesEarlierPlugins(t *testing.T) {
	e := newFakeEnv(t)
	e.conf(t, "10-a.conflist", "neta", "fakeip", "fakedelfail", "fakeport")
	m := e.manager(t, "neta")
	ctx := context.Background()
	if _, err := m.Setup(ctx, SetupRequest{PodID: "pod3", NetNS: "/run/fake/ns"}); err != nil {
		t.Fatal(err)
	}
	e.calls(t)
	if err := m.Teardown(ctx, SetupRequest{PodID: "pod3"}); err == nil {
		t.Fatal("Teardown succeeded with a failing plugin")
	}
	want := []string{
		"DEL fakeport pod3 eth0", "DEL fakedelfail pod3 eth0", // libcni stops here
		"DEL fakeport pod3 eth0", "DEL fakedelfail pod3 eth0", "DEL fakeip pod3 eth0", // best effort
	}
	if got := e.calls(t); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n := e.records(t); n != 1 {
		t.Fatalf("%d records, want the attachment kept for a retry", n)
	}
	if !strings.Contains(e.read(t, "fakeip.DEL.stdin"), `"prevResult"`) {
		t.Error("best-effort DEL lost prevResult")
	}

	// Once the plugin is fixed, a retry finishes and GC has nothing left.
	e.plugin(t, "fakedelfail", "ok", "ok")
	if err := m.Teardown(ctx, SetupRequest{PodID: "pod3"}); err != nil {
		t.Fatalf("retry Teardown: %v", err)
	}
	if n := e.records(t); n != 0 {
		t.Errorf("%d records left", n)
	}
	e.calls(t)
	if err := m.GC(ctx, nil); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := e.calls(t); len(got) != 0 {
		t.Errorf("GC ran plugins for nothing: %q", got)
	}
}

func TestFakeGC(t *testing.T) {
	e := newFakeEnv(t)
	e.conf(t, "10-a.conflist", "neta", "fakeip")
	m := e.manager(t, "neta")
	ctx := context.Background()
	for _, id := range []string{"keep", "stale"} {
		if _, err := m.Setup(ctx, SetupRequest{PodID: id, NetNS: "/run/fake/" + id}); err != nil {
			t.Fatal(err)
		}
	}
	e.calls(t)
	if err := m.GC(ctx, []string{"keep"}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got, want := e.calls(t), []string{"DEL fakeip stale eth0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n := e.records(t); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}
