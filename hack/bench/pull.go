package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// daemon is a background process the benchmark started and must stop.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once cmd has been waited for
}

func start(ctx context.Context, logDir, name string, args ...string) (*daemon, error) {
	logPath := filepath.Join(logDir, filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(d.done) }()
	return d, nil
}

func (d *daemon) logPath() string { return d.log }

// running reports whether the daemon has not exited yet.
func (d *daemon) running() bool {
	if d == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *daemon) stop() {
	if d == nil || d.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(d.cmd.Process.Pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
}

func waitSocket(ctx context.Context, path string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no daemon answered on %s", path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func goBuild(ctx context.Context, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	return nil
}

func crictlBinary(ctx context.Context, tmp string) (string, error) {
	dir := os.Getenv("SKIFF_TOOLS")
	if dir == "" {
		dir = "/opt/skiff-tools"
	}
	if p := filepath.Join(dir, "crictl"); fileExists(p) {
		return p, nil
	}
	modDir, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/cri-tools@v1.36.0").Output()
	if err != nil {
		return "", fmt.Errorf("download cri-tools: %w", err)
	}
	var src string
	for _, line := range strings.Split(string(modDir), "\n") {
		if strings.Contains(line, `"Dir"`) {
			src = strings.Trim(strings.TrimSpace(strings.SplitN(line, ":", 2)[1]), `",`)
		}
	}
	out := filepath.Join(tmp, "crictl")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/crictl")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build crictl: %v: %s", err, b)
	}
	return out, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// benchPull pulls the same image from the project's registry through skiffd
// and through containerd's CRI plugin, removing it between pulls so every
// pull downloads and unpacks all layers.
func benchPull(ctx context.Context, n int) error {
	tmp, err := os.MkdirTemp("", "skiff-bench-pull.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var daemons []*daemon
	defer func() {
		for _, d := range daemons {
			d.stop()
		}
		// containerd's overlay snapshots may stay mounted below tmp.
		_ = exec.Command("sh", "-c", "grep "+tmp+" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l").Run()
	}()

	for _, b := range []struct{ out, pkg string }{
		{filepath.Join(tmp, "skiffd"), "./cmd/skiffd"},
		{filepath.Join(tmp, "testimages"), "./hack/testimages"},
		{filepath.Join(tmp, "skiff-shim"), "./cmd/skiff-shim"},
	} {
		if err := goBuild(ctx, b.out, b.pkg); err != nil {
			return err
		}
	}
	crictl, err := crictlBinary(ctx, tmp)
	if err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	reg := fmt.Sprintf("127.0.0.1:%d", port)
	d, err := start(ctx, tmp, filepath.Join(tmp, "testimages"), "--listen", reg, "--with-large")
	if err != nil {
		return err
	}
	daemons = append(daemons, d)
	ref, err := largeImageRef(ctx, filepath.Join(tmp, "testimages"), reg)
	if err != nil {
		return err
	}
	if err := waitTCP(ctx, reg); err != nil {
		return err
	}

	skiffSock := filepath.Join(tmp, "skiff", "skiff.sock")
	skiffCfg := filepath.Join(tmp, "skiff.toml")
	if err := os.WriteFile(skiffCfg, []byte(fmt.Sprintf(`root = %q
state = %q
listen = "unix://%s"
[image]
insecure_registries = [%q]
[cni]
conf_dir = %q
`, filepath.Join(tmp, "skiff-root"), filepath.Join(tmp, "skiff"), skiffSock, reg, filepath.Join(tmp, "cni"))), 0o644); err != nil {
		return err
	}
	d, err = start(ctx, tmp, filepath.Join(tmp, "skiffd"), "--config", skiffCfg)
	if err != nil {
		return err
	}
	daemons = append(daemons, d)

	ctrdSock := filepath.Join(tmp, "containerd", "containerd.sock")
	hosts := filepath.Join(tmp, "certs.d", reg)
	if err := os.MkdirAll(hosts, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte(fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", reg, reg)), 0o644); err != nil {
		return err
	}
	ctrdCfg := filepath.Join(tmp, "containerd.toml")
	if err := os.WriteFile(ctrdCfg, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(tmp, "containerd-root"), filepath.Join(tmp, "containerd"), ctrdSock, filepath.Join(tmp, "cni"), filepath.Join(tmp, "certs.d"))), 0o644); err != nil {
		return err
	}
	d, err = start(ctx, tmp, "containerd", "--config", ctrdCfg)
	if err != nil {
		return err
	}
	daemons = append(daemons, d)
	for _, s := range []string{skiffSock, ctrdSock} {
		if err := waitSocket(ctx, s); err != nil {
			logs, _ := exec.Command("sh", "-c", "tail -n 20 "+tmp+"/*.log").CombinedOutput()
			return fmt.Errorf("%w\n%s", err, logs)
		}
	}

	pull := func(sock string) (time.Duration, error) {
		ep := "unix://" + sock
		d, err := timeRun(ctx, crictl, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "10m", "pull", ref)
		if err != nil {
			return 0, err
		}
		if _, err := timeRun(ctx, crictl, "--runtime-endpoint", ep, "--image-endpoint", ep, "rmi", ref); err != nil {
			return 0, err
		}
		return d, nil
	}
	var skiffT, ctrdT []time.Duration
	for i := -1; i < n; i++ {
		ds, err := pull(skiffSock)
		if err != nil {
			return fmt.Errorf("skiffd: %w", err)
		}
		dc, err := pull(ctrdSock)
		if err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
		if i >= 0 {
			skiffT, ctrdT = append(skiffT, ds), append(ctrdT, dc)
		}
	}
	report(fmt.Sprintf("crictl pull of %s (3 layers, ~100 MB, local registry; %d pulls each after one warm-up)", ref, n),
		summarize("skiffd", skiffT), summarize("containerd 1.6 (Debian)", ctrdT))
	return nil
}

// largeImageRef asks the test image tool where it serves the benchmark image.
func largeImageRef(ctx context.Context, tool, reg string) (string, error) {
	out, err := exec.CommandContext(ctx, tool, "--list", "--with-large", "--listen", reg).Output()
	if err != nil {
		return "", fmt.Errorf("list test images: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "large") {
			// The tool serves upstream name H/R at <registry>/H/R; pull it from
			// there directly so both runtimes fetch over plain HTTP alike.
			f := strings.Fields(sc.Text())
			return reg + "/" + f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("the test image tool lists no large benchmark image")
}

func waitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("registry %s did not come up", addr)
}
