// Command testimages serves Skiff's test image set (every image critest
// v1.36.0 pulls, built from Debian's busybox-static) from a registry on
// loopback, under the upstream names through skiffd's registry mirrors.
//
//	go run ./hack/testimages --listen 127.0.0.1:5000            # serve until killed
//	go run ./hack/testimages --listen 127.0.0.1:5000 --print-mirrors-toml
//	go run ./hack/testimages --list [--with-large]
//	go run ./hack/testimages --listen 127.0.0.1:0 --addr-file /tmp/addr   # free port, address in the file
//	go run ./hack/testimages --agnhost /path/to/agnhost ...   # plus the node e2e images
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/skiffcri/skiff/test/registry"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5000", "address to serve the registry on")
	printTOML := flag.Bool("print-mirrors-toml", false, "print skiffd's [image] config section (mirrors, insecure_registries) for --listen and exit")
	printContainerd := flag.Bool("print-containerd-toml", false, "print containerd 1.6 CRI registry mirror sections for --listen and exit (for side-by-side runs)")
	withLarge := flag.Bool("with-large", false, "add "+registry.LargeName+" (~100 MB, 3 layers) for pull benchmarks")
	list := flag.Bool("list", false, "print every upstream name served and exit")
	busybox := flag.String("busybox", registry.DefaultBusybox, "statically linked busybox to build the images from")
	logRequests := flag.Bool("log-requests", false, "log every registry request to stderr")
	agnhost := flag.String("agnhost", "", "static agnhost binary: also serve the images of the kubelet's node e2e suite (hack/node-e2e.sh)")
	addrFile := flag.String("addr-file", "", "once serving, write the registry's address (useful with --listen 127.0.0.1:0) to this file")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "testimages: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *addrFile, *printTOML, *printContainerd, *list, *logRequests, registry.Options{Busybox: *busybox, WithLarge: *withLarge, Agnhost: *agnhost}); err != nil {
		slog.Error("testimages", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, addrFile string, printTOML, printContainerd, list, logRequests bool, opts registry.Options) error {
	if printTOML || printContainerd || list {
		set, err := registry.Images(ctx, opts)
		if err != nil {
			return err
		}
		names := registry.Names(set)
		if list {
			for _, n := range names {
				fmt.Println(n)
			}
			return nil
		}
		if printContainerd {
			fmt.Print(registry.ContainerdMirrorsTOML(listen, registry.HostsOf(names)))
			return nil
		}
		fmt.Print(registry.MirrorsTOML(listen, registry.HostsOf(names)))
		return nil
	}
	var reqLog io.Writer
	if logRequests {
		reqLog = os.Stderr
	}
	r, err := registry.Listen(ctx, listen, opts, reqLog)
	if err != nil {
		return err
	}
	slog.Info("serving test images", "addr", r.Addr(), "images", len(r.Names()))
	if addrFile != "" {
		// Written whole then renamed, so a reader never sees a partial address.
		tmp := addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(r.Addr()+"\n"), 0o644); err != nil {
			return errors.Join(err, r.Close())
		}
		if err := os.Rename(tmp, addrFile); err != nil {
			return errors.Join(err, r.Close())
		}
	}
	<-ctx.Done()
	slog.Info("shutting down")
	return r.Close()
}
