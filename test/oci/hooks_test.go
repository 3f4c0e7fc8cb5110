package oci_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// hookScript writes a host shell script that appends its first argument,
// its mount namespace and its pid namespace to log and keeps the state it
// got on stdin in log.<arg>.json; with fail set it then exits 1.
func hookScript(t *testing.T, log string, fail bool) string {
	t.Helper()
	body := `#!/bin/sh
cat > "` + log + `.$1.json"
echo "$1 $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/pid)" >> "` + log + `"
`
	if fail {
		body += "echo hook says no >&2\nexit 1\n"
	}
	p := filepath.Join(t.TempDir(), "hook.sh")
	must(t, os.WriteFile(p, []byte(body), 0o755))
	return p
}

func hookState(t *testing.T, log, phase string) specs.State {
	t.Helper()
	b, err := os.ReadFile(log + "." + phase + ".json")
	must(t, err)
	var st specs.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s hook's stdin %q: %v", phase, b, err)
	}
	return st
}

// logLines returns log's lines, split into fields.
func logLines(t *testing.T, log string) [][]string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, strings.Fields(l))
		}
	}
	return out
}

func phases(lines [][]string) string {
	var p []string
	for _, l := range lines {
		p = append(p, l[0])
	}
	return strings.Join(p, " ")
}

func TestHooksRunInOrder(t *testing.T) {
	e := newExecutor(t)
	ctx := testCtx(t)
	log := filepath.Join(t.TempDir(), "log")
	host := hookScript(t, log, false)
	hook := func(phase string) []specs.Hook {
		return []specs.Hook{{Path: host, Args: []string{"hook.sh", phase}, Env: []string{"PATH=/usr/bin:/bin"}}}
	}
	rootfs := newRootfs(t)
	// startContainer runs in the container: its path is the container's.
	must(t, os.WriteFile(filepath.Join(rootfs, "start-hook.sh"),
		[]byte("#!/bin/sh\ncat > /tmp/start.json\necho startContainer $(id -u) >> /tmp/order\n"), 0o755))
	must(t, os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777))
	spec := sh(`echo user >> /tmp/order; exec sleep 30`)
	spec.Process.User = specs.User{UID: 1000, GID: 1000}
	spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-hooks"
	spec.Annotations = map[string]string{"skiff.test/hooks": "yes"}
	spec.Hooks = &specs.Hooks{
		//lint:ignore SA1019 prestart hooks are still run, as the spec asks
		Prestart:        hook("prestart"),
		CreateRuntime:   hook("createRuntime"),
		CreateContainer: hook("createContainer"),
		StartContainer:  []specs.Hook{{Path: "/start-hook.sh", Env: []string{"PATH=/bin"}}},
		Poststart:       hook("poststart"),
		Poststop:        hook("poststop"),
	}
	c, _ := create(t, e, "hooks", spec, rootfs)
	if got := phases(logLines(t, log)); got != "prestart createRuntime createContainer" {
		t.Fatalf("hooks after create: %q", got)
	}
	lines := logLines(t, log)
	hostMnt, _ := os.Readlink("/proc/self/ns/mnt")
	hostPid, _ := os.Readlink("/proc/self/ns/pid")
	initMnt, _ := os.Readlink("/proc/" + strconv.Itoa(c.Pid) + "/ns/mnt")
	initPid, _ := os.Readlink("/proc/" + strconv.Itoa(c.Pid) + "/ns/pid")
	for _, l := range lines[:2] {
		if l[1] != hostMnt || l[2] != hostPid {
			t.Errorf("%s hook ran in namespaces %v, want the runtime's %s %s", l[0], l[1:], hostMnt, hostPid)
		}
	}
	if l := lines[2]; l[1] != initMnt || l[2] != initPid {
		t.Errorf("createContainer hook ran in namespaces %v, want the container's %s %s", l[1:], initMnt, initPid)
	}
	for _, phase := range []string{"prestart", "createRuntime", "createContainer"} {
		st := hookState(t, log, phase)
		if st.ID != "hooks" || st.Pid != c.Pid || st.Status != specs.StateCreating ||
			st.Annotations["skiff.test/hooks"] != "yes" || st.Bundle == "" {
			t.Errorf("%s hook got state %+v, want id hooks, pid %d, creating, the annotations and a bundle", phase, st, c.Pid)
		}
		// With no bundle given, the bundle is the state directory: its
		// config.json names the rootfs.
		b, err := os.ReadFile(filepath.Join(st.Bundle, "config.json"))
		must(t, err)
		var kept specs.Spec
		must(t, json.Unmarshal(b, &kept))
		if kept.Root == nil || kept.Root.Path != rootfs {
			t.Errorf("%s hook's bundle %s: config.json root %+v, want %s", phase, st.Bundle, kept.Root, rootfs)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "tmp/order")); err == nil {
		t.Fatal("startContainer hook or process ran before Start")
	}

	must(t, e.Start(ctx, "hooks"))
	// Start returns after poststart, which follows the process's execve.
	if got := phases(logLines(t, log)); got != "prestart createRuntime createContainer poststart" {
		t.Fatalf("hooks after start: %q", got)
	}
	if st := hookState(t, log, "poststart"); st.Status != specs.StateRunning || st.Pid != c.Pid {
		t.Errorf("poststart state %+v", st)
	}
	waitFor(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(rootfs, "tmp/order"))
		return strings.Count(string(b), "\n") == 2
	})
	b, _ := os.ReadFile(filepath.Join(rootfs, "tmp/order"))
	if got := string(b); got != "startContainer 1000\nuser\n" {
		t.Errorf("inside the container: %q, want the startContainer hook (as the process's user) before the process", got)
	}
	b, _ = os.ReadFile(filepath.Join(rootfs, "tmp/start.json"))
	var st specs.State
	if err := json.Unmarshal(b, &st); err != nil || st.ID != "hooks" || st.Pid != c.Pid {
		t.Errorf("startContainer state %q (%v)", b, err)
	}

	must(t, e.Kill(ctx, "hooks", 9, false))
	_, err := c.Wait()
	must(t, err)
	must(t, e.Delete(ctx, "hooks", false))
	if got := phases(logLines(t, log)); got != "prestart createRuntime createContainer poststart poststop" {
		t.Fatalf("hooks after delete: %q", got)
	}
	if st := hookState(t, log, "poststop"); st.Status != specs.StateStopped || st.ID != "hooks" {
		t.Errorf("poststop state %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mountCount(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	return strings.Count(string(b), "\n")
}

// TestFailingCreateHookLeavesNothing: a failing create hook fails Create
// with its name and output, and leaves no process, cgroup, mount or state
// behind; the poststop hooks still run.
func TestFailingCreateHookLeavesNothing(t *testing.T) {
	for _, phase := range []string{"createRuntime", "createContainer"} {
		t.Run(phase, func(t *testing.T) {
			e := newExecutor(t)
			log := filepath.Join(t.TempDir(), "log")
			bad, good := hookScript(t, log, true), hookScript(t, log, false)
			spec := sh(`true`)
			id := "bad-" + strings.ToLower(phase)
			spec.Linux.CgroupsPath = "/skiff-test-" + strconv.Itoa(os.Getpid()) + "-" + id
			h := []specs.Hook{{Path: bad, Args: []string{"hook.sh", phase}}}
			spec.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: good, Args: []string{"hook.sh", "poststop"}}}}
			if phase == "createRuntime" {
				spec.Hooks.CreateRuntime = h
			} else {
				spec.Hooks.CreateContainer = h
			}
			rootfs := newRootfs(t)
			mounts := mountCount(t)
			_, err := e.Create(testCtx(t), id, oci.Bundle{Spec: spec, Rootfs: rootfs}, oci.IO{})
			if err == nil {
				e.Delete(testCtx(t), id, true)
				t.Fatal("create succeeded")
			}
			for _, want := range []string{phase + " hook " + bad, "exit status 1", "hook says no"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			st := hookState(t, log, phase)
			if st.Pid <= 0 {
				t.Fatalf("hook state %+v has no pid", st)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(st.Pid)); err == nil {
				t.Errorf("init %d is still there", st.Pid)
			}
			if _, err := cgroups.Load(spec.Linux.CgroupsPath); !errdefs.IsNotFound(err) {
				t.Errorf("cgroup left: %v", err)
			}
			if _, err := e.State(testCtx(t), id); !errdefs.IsNotFound(err) {
				t.Errorf("state left: %v", err)
			}
			if n := mountCount(t); n != mounts {
				t.Errorf("%d mounts before, %d after", mounts, n)
			}
			if got := phases(logLines(t, log)); got != phase+" poststop" {
				t.Errorf("hooks run: %q, want %s then poststop", got, phase)
			}
		})
	}
}

func TestHookTimeoutFailsCreate(t *testing.T) {
	e := newExecutor(t)
	p := filepath.Join(t.TempDir(), "slow.sh")
	must(t, os.WriteFile(p, []byte("#!/bin/sh\nsleep 60\n"), 0o755))
	one := 1
	spec := sh(`true`)
	spec.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{{Path: p, Timeout: &one}}}
	start := time.Now()
	_, err := e.Create(testCtx(t), "slow-hook", oci.Bundle{Spec: spec, Rootfs: newRootfs(t)}, oci.IO{})
	if err == nil {
		e.Delete(testCtx(t), "slow-hook", true)
		t.Fatal("create succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("create took %v with a 1 s hook timeout", d)
	}
	if !strings.Contains(err.Error(), "createContainer hook "+p) || !strings.Contains(err.Error(), "timeout of 1s") {
		t.Errorf("error %q does not name the hook and its timeout", err)
	}
}

func TestFailingStartContainerHookFailsStart(t *testing.T) {
	e := newExecutor(t)
	rootfs := newRootfs(t)
	must(t, os.WriteFile(filepath.Join(rootfs, "no.sh"), []byte("#!/bin/sh\necho not today\nexit 2\n"), 0o755))
	spec := sh(`touch /ran`)
	spec.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/no.sh"}}}
	c, _ := create(t, e, "bad-start", spec, rootfs)
	err := e.Start(testCtx(t), "bad-start")
	if err == nil || !strings.Contains(err.Error(), "startContainer hook /no.sh") || !strings.Contains(err.Error(), "not today") {
		t.Fatalf("start: %v, want the startContainer hook's failure", err)
	}
	ws, err := c.Wait()
	must(t, err)
	if ws.Code == 0 {
		t.Errorf("init exit %+v after a failed startContainer hook", ws)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "ran")); err == nil {
		t.Error("the process ran")
	}
}

func TestFailingPoststartHookIsNotFatal(t *testing.T) {
	e := newExecutor(t)
	log := filepath.Join(t.TempDir(), "log")
	spec := sh(`exec sleep 30`)
	spec.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: hookScript(t, log, true), Args: []string{"x", "poststart"}}}}
	c, _ := create(t, e, "poststart", spec, newRootfs(t))
	must(t, e.Start(testCtx(t), "poststart"))
	st, err := e.State(testCtx(t), "poststart")
	must(t, err)
	if st.Status != oci.StatusRunning {
		t.Errorf("status %s after a failed poststart hook", st.Status)
	}
	must(t, e.Kill(testCtx(t), "poststart", 9, false))
	c.Wait()
}
