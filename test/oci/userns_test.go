package oci_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/oci"
)

// usernsHost is where the test's user namespaces map their root.
const usernsHost = 200000

var usernsMap = []specs.LinuxIDMapping{{ContainerID: 0, HostID: usernsHost, Size: 65536}}

// podUserNS starts a process holding a new user namespace (0 → usernsHost)
// and net, ipc and uts namespaces it owns, as a pod sandbox does, and
// returns their /proc paths. The holder is killed on cleanup.
func podUserNS(t *testing.T) map[string]string {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsHost, Size: 65536}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsHost, Size: 65536}},
		GidMappingsEnableSetgroups: true,
	}
	must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ns := map[string]string{}
	for _, n := range []string{"user", "net", "ipc", "uts"} {
		ns[n] = fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, n)
	}
	return ns
}

// traversable lets a user namespace's root (an unprivileged host uid) walk
// down to p, as the runtime's own state directories allow.
func traversable(t *testing.T, p string) {
	t.Helper()
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		var st unix.Stat_t
		must(t, unix.Stat(d, &st))
		if st.Mode&0o001 == 0 {
			must(t, os.Chmod(d, os.FileMode(st.Mode&0o7777|0o011)))
		}
	}
}

func userNSSpec(ns map[string]string, script string) *specs.Spec {
	spec := sh(script)
	spec.Hostname = ""
	spec.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
		{Type: specs.UserNamespace, Path: ns["user"]},
		{Type: specs.NetworkNamespace, Path: ns["net"]},
		{Type: specs.IPCNamespace, Path: ns["ipc"]},
		{Type: specs.UTSNamespace, Path: ns["uts"]},
	}
	spec.Linux.UIDMappings = usernsMap
	spec.Linux.GIDMappings = usernsMap
	return spec
}

func TestJoinUserNamespace(t *testing.T) {
	e := newExecutor(t)
	ns := podUserNS(t)
	// An idmapped volume and a plain one, both root-owned on the host.
	vols := t.TempDir()
	mapped, plain := filepath.Join(vols, "mapped"), filepath.Join(vols, "plain")
	for _, d := range []string{mapped, plain} {
		must(t, os.Mkdir(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "file"), []byte("host\n"), 0o644))
	}
	// The plain volume's parent is root-only: reachable only through the
	// fd the executor opens on the host.
	must(t, os.Chmod(vols, 0o700))

	spec := userNSSpec(ns, `cat /proc/self/uid_map; echo pid=$$ uid=$(id -u) gid=$(id -g)
stat -c 'mapped-owner=%u' /mapped/file
echo new > /mapped/new && echo mapped-write=ok
echo x 2>/dev/null > /plain/file && echo plain-write=ok || echo plain-write=denied
stat -c 'plain-owner=%u' /plain/file
grep CapEff /proc/self/status
ls /sys/class/net | tr '\n' ' '; echo`)
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/mapped", Type: "bind", Source: mapped, Options: []string{"rbind", "rw"},
			UIDMappings: usernsMap, GIDMappings: usernsMap},
		specs.Mount{Destination: "/plain", Type: "bind", Source: plain, Options: []string{"rbind", "rw"}})
	rootfs := newRootfs(t)
	traversable(t, rootfs)
	// This rootfs is not idmapped, so its root-owned directories are not
	// the container root's to create mount points in.
	for _, d := range []string{"mapped", "plain"} {
		must(t, os.Mkdir(filepath.Join(rootfs, d), 0o755))
	}
	c, output := create(t, e, "userns", spec, rootfs)
	// Seen from the host, the init's user namespace is the pod's.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", c.Pid))
	must(t, err)
	if f := strings.Fields(string(b)); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(usernsHost) || f[2] != "65536" {
		t.Fatalf("host view of the init's uid_map: %q", b)
	}
	if got, want := inode(t, fmt.Sprintf("/proc/%d/ns/user", c.Pid)), inode(t, ns["user"]); got != want {
		t.Fatalf("init in user namespace %d, want the pod's %d", got, want)
	}
	must(t, e.Start(testCtx(t), "userns"))
	st, err := c.Wait()
	must(t, err)
	out := output()
	if st.Code != 0 {
		t.Fatalf("exit %+v, output:\n%s", st, out)
	}
	for _, want := range []string{
		fmt.Sprintf("0 %d 65536", usernsHost), // uid_map, columns padded
		"pid=1 uid=0 gid=0",
		"mapped-owner=0", "mapped-write=ok",
		"plain-write=denied", "plain-owner=65534",
		"CapEff:\t00000000a80425fb",
		"lo ", // sysfs of the pod's own netns
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// What the container's root wrote through the idmapped volume is root's
	// on the host's disk; the plain volume is untouched.
	var fst unix.Stat_t
	must(t, unix.Stat(filepath.Join(mapped, "new"), &fst))
	if fst.Uid != 0 || fst.Gid != 0 {
		t.Errorf("file written through the idmapped mount is %d:%d on disk, want 0:0", fst.Uid, fst.Gid)
	}
	if b, _ := os.ReadFile(filepath.Join(plain, "file")); string(b) != "host\n" {
		t.Errorf("plain volume's file changed: %q", b)
	}
}

func TestExecInUserNamespace(t *testing.T) {
	e := newExecutor(t)
	ns := podUserNS(t)
	rootfs := newRootfs(t)
	traversable(t, rootfs)
	c, _ := create(t, e, "userns-exec", userNSSpec(ns, `exec sleep 1000`), rootfs)
	must(t, e.Start(testCtx(t), "userns-exec"))
	t.Cleanup(func() {
		e.Kill(testCtx(t), "userns-exec", unix.SIGKILL, true)
		c.Wait()
	})
	r, w, err := os.Pipe()
	must(t, err)
	defer r.Close()
	p := &specs.Process{Args: []string{"sh", "-c", "cat /proc/self/uid_map; id -u; readlink /proc/self/ns/mnt"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	proc, err := e.Exec(testCtx(t), "userns-exec", p, oci.IO{Stdout: w, Stderr: w})
	w.Close()
	must(t, err)
	st, err := proc.Wait()
	must(t, err)
	out, _ := readAll(r)
	want := fmt.Sprintf("0 %d 65536 0 mnt:[%d]", usernsHost, inode(t, fmt.Sprintf("/proc/%d/ns/mnt", c.Pid)))
	if st.Code != 0 || strings.Join(strings.Fields(out), " ") != want {
		t.Fatalf("exec exit %+v, output %q, want %q", st, out, want)
	}
}

func TestUserNamespaceExitStatusAndKill(t *testing.T) {
	e := newExecutor(t)
	ns := podUserNS(t)
	for _, tc := range []struct {
		name   string
		script string
		kill   bool
		want   oci.ExitStatus
	}{
		{"code", "exit 7", false, oci.ExitStatus{Code: 7}},
		{"killed", "exec sleep 1000", true, oci.ExitStatus{Code: 137, Signal: unix.SIGKILL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := newRootfs(t)
			traversable(t, rootfs)
			id := "userns-" + tc.name
			c, _ := create(t, e, id, userNSSpec(ns, tc.script), rootfs)
			must(t, e.Start(testCtx(t), id))
			if tc.kill {
				must(t, e.Kill(testCtx(t), id, unix.SIGKILL, false))
			}
			st, err := c.Wait()
			must(t, err)
			if st != tc.want {
				t.Fatalf("exit %+v, want %+v", st, tc.want)
			}
		})
	}
}

func TestNewUserNamespace(t *testing.T) {
	e := newExecutor(t)
	spec := sh(`cat /proc/self/uid_map; echo pid=$$ uid=$(id -u); ls /sys/class/net | tr '\n' ' '`)
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Linux.UIDMappings = usernsMap
	spec.Linux.GIDMappings = usernsMap
	rootfs := newRootfs(t)
	traversable(t, rootfs)
	traversable(t, shimPath) // the init runs as the namespace's root from the start
	c, output := create(t, e, "userns-new", spec, rootfs)
	must(t, e.Start(testCtx(t), "userns-new"))
	st, err := c.Wait()
	must(t, err)
	out := strings.Join(strings.Fields(output()), " ")
	if want := fmt.Sprintf("0 %d 65536 pid=1 uid=0 lo", usernsHost); st.Code != 0 || out != want {
		t.Fatalf("exit %+v, output %q, want %q", st, out, want)
	}
}
