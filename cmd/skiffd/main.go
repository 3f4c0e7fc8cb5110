// Command skiffd is Skiff's CRI daemon: it serves the kubelet's
// RuntimeService and ImageService on a unix socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc"

	"github.com/skiffcri/skiff/cdi"
	"github.com/skiffcri/skiff/cni"
	"github.com/skiffcri/skiff/config"
	"github.com/skiffcri/skiff/cri"
	"github.com/skiffcri/skiff/image"
	"github.com/skiffcri/skiff/image/rootfs"
	"github.com/skiffcri/skiff/image/volume"
	"github.com/skiffcri/skiff/internal/statedir"
	"github.com/skiffcri/skiff/meta"
	"github.com/skiffcri/skiff/oci/cgroups"
	"github.com/skiffcri/skiff/shim/crishim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "skiffd:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("skiffd", flag.ContinueOnError)
	cfgPath := fs.String("config", config.DefaultPath, "config file (TOML); every field has a default")
	root := fs.String("root", "", "root directory for persistent state (overrides config)")
	state := fs.String("state", "", "state directory for runtime state (overrides config)")
	listen := fs.String("listen", "", "gRPC endpoint unix:///path (overrides config)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides config)")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *version {
		fmt.Println(cri.RuntimeName, cri.Version)
		return nil
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})
	cfg, err := config.Load(*cfgPath, explicit)
	if err != nil {
		return err
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{{*root, &cfg.Root}, {*state, &cfg.State}, {*listen, &cfg.Listen}, {*logLevel, &cfg.LogLevel}} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log level %q: %w", cfg.LogLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, cfg, log)
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return fmt.Errorf("root dir: %w", err)
	}
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	// Searchable by others, also when it existed: the root of a pod in a
	// user namespace is an unprivileged host uid that must walk down to its
	// container's rootfs mount.
	if err := os.Chmod(cfg.State, 0o711); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	dbPath := filepath.Join(cfg.Root, "meta.db")
	db, err := bbolt.Open(dbPath, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("open %s (is another skiffd running on this root?): %w", dbPath, err)
	}
	defer db.Close()

	images, err := image.New(ctx, image.Options{
		Root:               cfg.Root,
		DB:                 db,
		Mirrors:            cfg.Image.Mirrors,
		InsecureRegistries: cfg.Image.InsecureRegistries,
		StallTimeout:       cfg.Image.PullStallTimeout.Duration,
		MaxLayerSize:       cfg.Image.MaxLayerSize,
	})
	if err != nil {
		return fmt.Errorf("image service: %w", err)
	}

	store, err := meta.New(db)
	if err != nil {
		return err
	}
	network, err := cni.New(ctx, cni.Options{
		ConfDir: cfg.CNI.ConfDir, BinDirs: cfg.CNI.BinDirs,
		CacheDir: filepath.Join(cfg.Root, "cni"), Log: log.With("component", "cni"),
	})
	if err != nil {
		return fmt.Errorf("cni: %w", err)
	}
	defer network.Close()

	shimBin, err := shimBinary(cfg.ShimBinary)
	if err != nil {
		return err
	}
	// Containers get a cgroup namespace (and a cgroup2 mount) only on a
	// unified host, as with other runtimes; on v1 and hybrid hosts they see
	// bind mounts of their own cgroup in each hierarchy.
	cgroupV2 := false
	if layout, err := cgroups.DetectLayout(); err != nil {
		log.Warn("cannot detect the host's cgroup layout; assuming cgroup v1", "err", err)
	} else {
		cgroupV2 = layout.Mode == cgroups.Unified
		log.Info("host cgroups", "mode", layout.Mode)
	}
	// Containers' writable layers, under the persistent root.
	writableRoot := filepath.Join(cfg.Root, "containers")
	features := probeFeatures(ctx, log, shimBin, crishim.RuntimeRoot(cfg.State), cfg.State,
		[]string{filepath.Join(cfg.Root, "layers"), writableRoot})
	handlers, ociRuntimes, err := runtimeHandlers(ctx, log, cfg, features)
	if err != nil {
		return err
	}
	srv := cri.New(cri.Options{
		Shims:    crishim.New(crishim.Options{Binary: shimBin, StateDir: cfg.State, Runtimes: ociRuntimes, Debug: log.Enabled(ctx, slog.LevelDebug)}),
		Seccomp:  seccompProfiles{},
		CDI:      cdi.New(cfg.CDISpecDirs),
		Images:   images,
		Network:  cniNetwork{network},
		PodOS:    podOS{nsHolder: shimBin},
		NetStats: podNetStats{},
		Rootfs: rootfsManager{&rootfs.Manager{
			RootDir: writableRoot, Layers: images, Containers: statedir.Under(cfg.State),
		}},
		// Image volumes are mounted in the state: a reboot takes the
		// mounts, and the next container that needs one mounts it again.
		ImageVolumes:    imageVolumeManager{&volume.Manager{Mounts: statedir.ImageVolumesUnder(cfg.State), Layers: images}},
		Meta:            store,
		StateDir:        cfg.State,
		RootfsRoot:      writableRoot,
		CgroupDriver:    cfg.CgroupDriver,
		CgroupV2:        cgroupV2,
		RuntimeHandlers: handlers,
		Features:        features,
		Log:             log,
	})
	if err := srv.Recover(ctx); err != nil {
		return err
	}
	streams, err := srv.NewStreamServer(cfg.StreamAddress)
	if err != nil {
		return err
	}
	go func() {
		if err := streams.Serve(); err != nil {
			log.Error("stream server", "err", err)
		}
	}()
	defer streams.Close()

	sock, err := config.SocketPath(cfg.Listen)
	if err != nil {
		return err
	}
	lis, err := listenUnix(sock)
	if err != nil {
		return err
	}
	g := grpc.NewServer(cri.Interceptors(log)...)
	srv.Register(g)

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	log.Info("skiffd serving", "listen", cfg.Listen, "streams", streams.Addr(), "root", cfg.Root, "state", cfg.State, "version", cri.Version)

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", sock, err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
	// The exit watches end with ctx; what one is doing may still use the
	// store, which closes when this returns.
	waited := make(chan struct{})
	go func() { srv.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		log.Warn("exit watches still running at shutdown")
	}
	_ = os.Remove(sock)
	return nil
}

// shimBinary finds skiff-shim: the configured path, else next to skiffd,
// else on $PATH.
func shimBinary(configured string) (string, error) {
	if configured != "" {
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("shim_binary: %w", err)
		}
		return configured, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "skiff-shim")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("skiff-shim")
	if err != nil {
		return "", fmt.Errorf("skiff-shim not found next to skiffd or on $PATH (set shim_binary): %w", err)
	}
	return p, nil
}

// listenUnix replaces a stale socket left by a killed daemon, but refuses to
// steal one that a live daemon still answers on.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another daemon is serving on it", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return lis, nil
}
