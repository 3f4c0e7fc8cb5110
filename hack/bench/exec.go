package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// busyboxRootfs makes a minimal rootfs from Debian's static busybox.
func busyboxRootfs(dir string) error {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is needed: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "true", "sleep", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			return err
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// makeBundle writes runc's default spec with /bin/true as the process and
// a cgroup, so both runtimes run exactly the same bundle.
func makeBundle(ctx context.Context, dir string) error {
	if err := busyboxRootfs(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v: %s", err, out)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	proc := spec["process"].(map[string]any)
	proc["args"] = []string{"/bin/true"}
	proc["terminal"] = false
	// A cgroup for both: runc makes one (/<id>) when the spec names none,
	// Skiff's executor none, and the kubelet always names one.
	spec["linux"].(map[string]any)["cgroupsPath"] = "/skiff-bench-exec"
	out, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

func buildShim(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "skiff-shim")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/skiff-shim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build skiff-shim: %w", err)
	}
	return out, nil
}

func timeRun(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return d, nil
}

func benchExec(ctx context.Context, n int, shim string) error {
	tmp, err := os.MkdirTemp("", "skiff-bench-exec.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bundle := filepath.Join(tmp, "bundle")
	if err := makeBundle(ctx, bundle); err != nil {
		return err
	}
	if shim == "" {
		if shim, err = buildShim(ctx, tmp); err != nil {
			return err
		}
	}
	runcRoot, skiffRoot := filepath.Join(tmp, "runc-state"), filepath.Join(tmp, "skiff-state")
	var skiffT, runcT []time.Duration
	cpu0, _ := readCPUTimes()
	// One warm-up each, then alternate so drift hits both alike.
	for i := -1; i < n; i++ {
		id := fmt.Sprintf("bench-%d", i+1)
		d, err := timeRun(ctx, shim, "runtime", "--root", skiffRoot, "run", "--bundle", bundle, id)
		if err != nil {
			return err
		}
		_ = exec.Command(shim, "runtime", "--root", skiffRoot, "delete", "--force", id).Run()
		if i >= 0 {
			skiffT = append(skiffT, d)
		}
		d, err = timeRun(ctx, "runc", "--root", runcRoot, "run", "--bundle", bundle, id)
		if err != nil {
			return err
		}
		if i >= 0 {
			runcT = append(runcT, d)
		}
	}
	report(fmt.Sprintf("create+start+wait+delete of /bin/true (same bundle, %d runs each)", n),
		summarize("skiff-shim runtime run", skiffT), summarize("runc run (Debian "+runcVersion()+")", runcT))
	fmt.Println(stealNote(stealSince(cpu0)))
	return nil
}

func runcVersion() string {
	out, err := exec.Command("runc", "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return f[2]
	}
	return "?"
}
