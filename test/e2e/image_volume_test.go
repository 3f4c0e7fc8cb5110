package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/test/registry"
)

// imageVolume is an image volume mount as the kubelet sends it.
func imageVolume(dst, ref, sub string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub, Readonly: true}
}

// imageID is the ID skiffd reports for ref.
func (d *daemon) imageID(t *testing.T, ref string) string {
	t.Helper()
	st, err := d.img.ImageStatus(ctxT(t, 30*time.Second), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus %s: %v, %v", ref, st, err)
	}
	return st.Image.Id
}

// volumeMountPoint is where skiffd mounts an image for image volumes.
func (d *daemon) volumeMountPoint(id string) string {
	return filepath.Join(d.state, "image-volumes", strings.TrimPrefix(id, "sha256:"))
}

// mountTypes lists the filesystem types of the mounts at mp in the host's
// mount table, one entry a mount.
func mountTypes(t *testing.T, mp string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(after) < 1 || unescapeMountinfo(fields[4]) != mp {
			continue
		}
		out = append(out, after[0])
	}
	return out
}

// run is ExecSync that fails the test when the call itself fails.
func (d *daemon) run(t *testing.T, id string, cmd ...string) *runtimeapi.ExecSyncResponse {
	t.Helper()
	resp, err := d.execSync(t, id, 10, cmd...)
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, id, err)
	}
	return resp
}

// TestImageVolumes runs containers with image volumes (CRI Mount.image):
// the image's merged layers show read-only at the container path, a sub
// path shows only that directory, two containers share one mount of the
// image, RemoveImage is refused while a container mounts it, and the
// mount goes with the last container. A restarted skiffd keeps the mounts;
// one that a reboot took is made again for the next container.
func TestImageVolumes(t *testing.T) {
	d := startDaemon(t)
	ctx := ctxT(t, 5*time.Minute)
	d.pull(t, busybox)
	volRef := d.pull(t, registry.VolumeImage) // what the kubelet then names it by
	d.pull(t, registry.VolumeImageSingle)
	volID, singleID := d.imageID(t, registry.VolumeImage), d.imageID(t, registry.VolumeImageSingle)
	volMP, singleMP := d.volumeMountPoint(volID), d.volumeMountPoint(singleID)
	fsBefore, err := d.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}

	podID, podCfg := d.runPod(t, "imgvol")
	rw := imageVolume("/rw", registry.VolumeImage, "")
	rw.Readonly = false // asked read-write: still read-only
	cfgA := containerConfig("a", busybox, "sleep", "1000")
	cfgA.Mounts = []*runtimeapi.Mount{
		imageVolume("/vol", volRef, ""),
		imageVolume("/sub", registry.VolumeImage, "data/sub"),
		imageVolume("/single", registry.VolumeImageSingle, ""),
		rw,
	}
	a := d.createContainer(t, podID, podCfg, cfgA)
	d.startContainer(t, a)

	for _, c := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"cat", "/vol/data/b.txt"}, registry.VolumeFileB}, // the upper layer's
		{[]string{"cat", "/vol/data/sub/c.txt"}, registry.VolumeFileC},
		{[]string{"cat", "/rw/data/sub/d.txt"}, registry.VolumeFileD},
		{[]string{"ls", "-A", "/vol/data"}, "b.txt\nsub\n"}, // a.txt whited out
		{[]string{"ls", "-A", "/sub"}, "c.txt\nd.txt\n"},
		{[]string{"cat", "/single/only/file.txt"}, registry.VolumeFileSingle},
	} {
		resp := d.run(t, a, c.cmd...)
		if resp.ExitCode != 0 || string(resp.Stdout) != c.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", c.cmd, resp.ExitCode, resp.Stdout, resp.Stderr, c.want)
		}
	}
	for _, p := range []string{"/vol/new", "/vol/data/b.txt", "/sub/new", "/single/new", "/rw/new"} {
		resp := d.run(t, a, "sh", "-c", "echo x > "+p)
		if resp.ExitCode == 0 || !strings.Contains(string(resp.Stderr), "Read-only file system") {
			t.Errorf("write to %s: exit %d, stderr %q; want EROFS", p, resp.ExitCode, resp.Stderr)
		}
	}
	if got := mountTypes(t, volMP); !slices.Equal(got, []string{"overlay"}) {
		t.Errorf("mounts at %s: %v, want one overlay", volMP, got)
	}
	if got := mountTypes(t, singleMP); len(got) != 1 || got[0] == "overlay" {
		t.Errorf("mounts at %s: %v, want one bind of the layer", singleMP, got)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(volMP, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("host mount %s: flags %#x, %v; want read-only", volMP, st.Flags, err)
	}

	// A second container, through a symlink inside the image.
	cfgB := containerConfig("b", busybox, "sleep", "1000")
	cfgB.Mounts = []*runtimeapi.Mount{imageVolume("/v", volID, "sub")}
	b := d.createContainer(t, podID, podCfg, cfgB)
	d.startContainer(t, b)
	if resp := d.run(t, b, "cat", "/v/d.txt"); string(resp.Stdout) != registry.VolumeFileD {
		t.Errorf("b: /v/d.txt = %q (%s), want %q", resp.Stdout, resp.Stderr, registry.VolumeFileD)
	}
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at or below %s with two containers, want 1 shared", n, volMP)
	}
	if n := len(mountsUnder(filepath.Join(d.state, "image-volumes"))); n != 2 {
		t.Errorf("%d image volume mounts for two images, want 2", n)
	}

	// Refused: sub paths leading out or missing, an unknown image. The
	// shared mount stays.
	for _, c := range []struct {
		name  string
		mount *runtimeapi.Mount
		code  codes.Code
	}{
		{"escape", imageVolume("/v", registry.VolumeImage, "escape"), codes.InvalidArgument},
		{"abs", imageVolume("/v", registry.VolumeImage, "abs"), codes.InvalidArgument},
		{"climb", imageVolume("/v", registry.VolumeImage, "../data"), codes.InvalidArgument},
		{"missing", imageVolume("/v", registry.VolumeImage, "data/none"), codes.InvalidArgument},
		{"unknown", imageVolume("/v", "docker.io/skiff-test/never-pulled:1", ""), codes.NotFound},
		{"bidirectional", func() *runtimeapi.Mount {
			m := imageVolume("/v", registry.VolumeImage, "")
			m.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			return m
		}(), codes.InvalidArgument},
	} {
		cfg := containerConfig("refused-"+c.name, busybox, "sleep", "1000")
		cfg.Mounts = []*runtimeapi.Mount{c.mount}
		cfg.Linux.SecurityContext.NamespaceOptions = podCfg.Linux.SecurityContext.NamespaceOptions
		_, err := d.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
		if status.Code(err) != c.code {
			t.Errorf("CreateContainer with %s: %v, want code %v", c.name, err, c.code)
		}
	}
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s after the refused creates, want still 1", n, volMP)
	}

	// Mounted images cannot be removed; a container's rootfs image can.
	for _, ref := range []string{registry.VolumeImage, volID, registry.VolumeImageSingle} {
		_, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "mounted as an image volume by container") {
			t.Errorf("RemoveImage %s while mounted: %v, want FailedPrecondition", ref, err)
		}
	}
	fsAfter, err := d.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	before, after := fsBefore.ImageFilesystems[0], fsAfter.ImageFilesystems[0]
	if after.UsedBytes.GetValue() != before.UsedBytes.GetValue() || after.InodesUsed.GetValue() != before.InodesUsed.GetValue() {
		t.Errorf("ImageFsInfo with the images mounted: %d bytes, %d inodes; before %d, %d: the mounts must add nothing",
			after.UsedBytes.GetValue(), after.InodesUsed.GetValue(), before.UsedBytes.GetValue(), before.InodesUsed.GetValue())
	}

	// After the measure: removing it frees its manifest and config.
	if _, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: busybox}}); err != nil {
		t.Errorf("RemoveImage of the containers' rootfs image: %v", err)
	}

	// A restarted daemon finds the mounts and the records that keep them.
	d.stop()
	d.restart()
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s after a restart, want 1", n, volMP)
	}
	// What a reboot does to the mount (the state is on a tmpfs): the next
	// container that mounts the image mounts it again.
	if err := unix.Unmount(volMP, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	d.pull(t, busybox) // removed above
	cfgC := containerConfig("c", busybox, "sleep", "1000")
	cfgC.Mounts = []*runtimeapi.Mount{imageVolume("/v", registry.VolumeImage, "data")}
	c := d.createContainer(t, podID, podCfg, cfgC)
	d.startContainer(t, c)
	if resp := d.run(t, c, "cat", "/v/b.txt"); string(resp.Stdout) != registry.VolumeFileB {
		t.Errorf("c after the mount was lost: /v/b.txt = %q (%s)", resp.Stdout, resp.Stderr)
	}
	if got := mountTypes(t, volMP); !slices.Equal(got, []string{"overlay"}) {
		t.Errorf("mounts at %s after mounting again: %v, want one overlay", volMP, got)
	}

	// The last container that mounts an image takes the mount with it.
	remove := func(id string) {
		t.Helper()
		if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StopContainer %s: %v", id, err)
		}
		if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", id, err)
		}
	}
	remove(a)
	if n := len(mountsUnder(singleMP)); n != 0 {
		t.Errorf("%s still mounted after its only container went", singleMP)
	}
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s with two containers left, want 1", n, volMP)
	}
	remove(b)
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s with one container left, want 1", n, volMP)
	}
	remove(c)
	if left := mountsUnder(filepath.Join(d.state, "image-volumes")); len(left) != 0 {
		t.Errorf("image volume mounts after every container went: %v", left)
	}
	if _, err := os.Stat(volMP); !os.IsNotExist(err) {
		t.Errorf("mount point %s left: %v", volMP, err)
	}
	for _, ref := range []string{registry.VolumeImage, registry.VolumeImageSingle} {
		if _, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Errorf("RemoveImage %s after its containers went: %v", ref, err)
		}
	}
}

// podVolumeMountPoint is where skiffd mounts an image for the image
// volumes of a pod with a user namespace, idmapped with it.
func (d *daemon) podVolumeMountPoint(id, podID string) string {
	return d.volumeMountPoint(id) + "@" + podID
}

// TestUserNamespaceImageVolumes mounts image volumes, with the pod's ID
// mappings as the kubelet sends them, in a pod with a user namespace
// (hostUsers: false). The pod gets its own read-only mount of each image,
// made of idmapped layers: an overlay for the two-layer image (the
// overlay itself cannot be idmapped, which once failed CreateContainer
// with FailedPrecondition), an idmapped clone of the layer for the
// single-layer one. Inside, the image's files are owned by the pod's root
// (uid 0), merged, read-only; sub paths work; the pod's containers share
// the mount, a restarted skiffd keeps it, and it goes with the pod's last
// container that mounts the image. A pod without a user namespace
// mounting the same image uses the image's plain mount.
func TestUserNamespaceImageVolumes(t *testing.T) {
	d := startDaemon(t)
	ctx := ctxT(t, 5*time.Minute)
	d.pull(t, busybox)
	d.pull(t, registry.VolumeImage)
	d.pull(t, registry.VolumeImageSingle)
	volID, singleID := d.imageID(t, registry.VolumeImage), d.imageID(t, registry.VolumeImageSingle)
	mapping := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: usernsHostID, Length: 65536}}
	mapped := func(m *runtimeapi.Mount) *runtimeapi.Mount {
		m.UidMappings, m.GidMappings = mapping, mapping
		return m
	}
	podCfg := d.podConfig("userns-imgvol")
	podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
	podID := d.runPodWith(t, podCfg)
	volMP, singleMP, plainMP := d.podVolumeMountPoint(volID, podID), d.podVolumeMountPoint(singleID, podID), d.volumeMountPoint(volID)
	volumes := filepath.Join(d.state, "image-volumes")

	cfgA := containerConfig("a", busybox, "sleep", "1000")
	cfgA.Mounts = []*runtimeapi.Mount{
		mapped(imageVolume("/vol", registry.VolumeImage, "")),
		mapped(imageVolume("/sub", registry.VolumeImage, "data/sub")),
		mapped(imageVolume("/single", registry.VolumeImageSingle, "")),
	}
	a := d.createContainer(t, podID, podCfg, cfgA)
	d.startContainer(t, a)
	check := func(id string, cmds map[string][]string) {
		t.Helper()
		for want, cmd := range cmds {
			resp := d.run(t, id, cmd...)
			if resp.ExitCode != 0 || string(resp.Stdout) != want {
				t.Errorf("%s: %v: exit %d, stdout %q, stderr %q; want %q", id, cmd, resp.ExitCode, resp.Stdout, resp.Stderr, want)
			}
		}
	}
	check(a, map[string][]string{
		"0\n":                      {"id", "-u"},
		strings.Repeat("0:0\n", 7): {"stat", "-c", "%u:%g", "/vol", "/vol/data", "/vol/data/b.txt", "/vol/data/sub/c.txt", "/sub/d.txt", "/single/only", "/single/only/file.txt"},
		registry.VolumeFileB:       {"cat", "/vol/data/b.txt"}, // the upper layer's
		"b.txt\nsub\n":             {"ls", "-A", "/vol/data"},  // a.txt whited out
		"c.txt\nd.txt\n":           {"ls", "-A", "/sub"},
		registry.VolumeFileSingle:  {"cat", "/single/only/file.txt"},
	})
	for _, p := range []string{"/vol/new", "/vol/data/b.txt", "/sub/new", "/single/new", "/single/only/file.txt"} {
		resp := d.run(t, a, "sh", "-c", "echo x > "+p)
		if resp.ExitCode == 0 || !strings.Contains(string(resp.Stderr), "Read-only file system") {
			t.Errorf("write to %s as the pod's root: exit %d, stderr %q; want EROFS", p, resp.ExitCode, resp.Stderr)
		}
	}
	// On the host: the pod's own mounts, read-only, showing the image's
	// files as the pod's root's host uid; no plain mount of the image.
	if got := mountTypes(t, volMP); !slices.Equal(got, []string{"overlay"}) {
		t.Errorf("mounts at %s: %v, want one overlay", volMP, got)
	}
	if got := mountTypes(t, singleMP); len(got) != 1 || got[0] == "overlay" {
		t.Errorf("mounts at %s: %v, want one clone of the layer", singleMP, got)
	}
	if n := len(mountsUnder(volumes)); n != 2 {
		t.Errorf("image volume mounts %v, want the pod's two", mountsUnder(volumes))
	}
	for _, mp := range []string{volMP, singleMP} {
		var st unix.Statfs_t
		if err := unix.Statfs(mp, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("host mount %s: flags %#x, %v; want read-only", mp, st.Flags, err)
		}
	}
	for _, f := range []string{filepath.Join(volMP, "data", "b.txt"), filepath.Join(singleMP, "only", "file.txt")} {
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err != nil || st.Uid != usernsHostID || st.Gid != usernsHostID {
			t.Errorf("host view of %s: %d:%d (%v), want %d:%d", f, st.Uid, st.Gid, err, usernsHostID, usernsHostID)
		}
	}

	// A second container of the pod, by image ID, through a symlink inside
	// the image: the same mount.
	cfgB := containerConfig("b", busybox, "sleep", "1000")
	cfgB.Mounts = []*runtimeapi.Mount{mapped(imageVolume("/v", volID, "sub"))}
	b := d.createContainer(t, podID, podCfg, cfgB)
	d.startContainer(t, b)
	check(b, map[string][]string{registry.VolumeFileD: {"cat", "/v/d.txt"}, "0\n": {"stat", "-c", "%u", "/v/d.txt"}})
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s with two containers, want 1 shared", n, volMP)
	}

	// A pod without a user namespace mounts the image's plain mount.
	plainPod, plainCfg := d.runPod(t, "plain-imgvol")
	cfgN := containerConfig("n", busybox, "sleep", "1000")
	cfgN.Mounts = []*runtimeapi.Mount{imageVolume("/vol", registry.VolumeImage, "")}
	n := d.createContainer(t, plainPod, plainCfg, cfgN)
	d.startContainer(t, n)
	check(n, map[string][]string{registry.VolumeFileB: {"cat", "/vol/data/b.txt"}, "0\n": {"stat", "-c", "%u", "/vol/data/b.txt"}})
	if got := mountTypes(t, plainMP); !slices.Equal(got, []string{"overlay"}) {
		t.Errorf("mounts at %s: %v, want the image's plain overlay", plainMP, got)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(plainMP, "data", "b.txt"), &st); err != nil || st.Uid != 0 {
		t.Errorf("host view of the plain mount: uid %d (%v), want 0", st.Uid, err)
	}
	if n := len(mountsUnder(volumes)); n != 3 {
		t.Errorf("image volume mounts %v, want the pod's two and the plain one", mountsUnder(volumes))
	}

	for _, ref := range []string{registry.VolumeImage, registry.VolumeImageSingle} {
		_, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "mounted as an image volume by container") {
			t.Errorf("RemoveImage %s while mounted: %v, want FailedPrecondition", ref, err)
		}
	}

	// A restarted daemon finds the pod's mount and shares it with the
	// next container of the pod.
	d.stop()
	d.restart()
	cfgC := containerConfig("c", busybox, "sleep", "1000")
	cfgC.Mounts = []*runtimeapi.Mount{mapped(imageVolume("/v", registry.VolumeImage, "data"))}
	c := d.createContainer(t, podID, podCfg, cfgC)
	d.startContainer(t, c)
	check(c, map[string][]string{registry.VolumeFileB: {"cat", "/v/b.txt"}, "0\n": {"stat", "-c", "%u", "/v/b.txt"}})
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s after a restart and a third container, want 1", n, volMP)
	}

	// Each mount goes with the last container that mounts it.
	remove := func(id string) {
		t.Helper()
		if _, err := d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StopContainer %s: %v", id, err)
		}
		if _, err := d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", id, err)
		}
	}
	remove(n)
	if got := mountsUnder(plainMP); len(got) != 0 {
		t.Errorf("plain mount %v left after its only container went", got)
	}
	remove(a)
	if got := mountsUnder(singleMP); len(got) != 0 {
		t.Errorf("%v still mounted after the pod's only container mounting it went", got)
	}
	remove(b)
	if n := len(mountsUnder(volMP)); n != 1 {
		t.Errorf("%d mounts at %s with one container left, want 1", n, volMP)
	}
	remove(c)
	if left := mountsUnder(volumes); len(left) != 0 {
		t.Errorf("image volume mounts after every container went: %v", left)
	}
	if ents, _ := os.ReadDir(volumes); len(ents) != 0 {
		t.Errorf("mount points left in %s: %v", volumes, ents)
	}
	for _, ref := range []string{registry.VolumeImage, registry.VolumeImageSingle} {
		if _, err := d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Errorf("RemoveImage %s after its containers went: %v", ref, err)
		}
	}
}
