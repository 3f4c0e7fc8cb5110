package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/oci"
	"github.com/skiffcri/skiff/oci/cgroups"
)

// killCgroup kills every process of the cgroup at path and removes it:
// skiffd runs it ("runtime kill-cgroup") for the pod init's cgroup when the
// pod's shim died and nobody else would. A missing cgroup is no error.
func killCgroup(ctx context.Context, path string) error {
	m, err := cgroups.Load(path)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.KillAll(ctx, unix.SIGKILL); err != nil {
		return err
	}
	return m.Destroy(ctx)
}

// cliUpdate sets new limits on a container's cgroup, as runc update -r.
func cliUpdate(ctx context.Context, e *oci.Executor, args []string) error {
	fs := flag.NewFlagSet("update", flag.ContinueOnError)
	file := fs.String("resources", "", "runtime-spec LinuxResources as JSON (- for stdin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("update needs --resources")
	}
	return withID(fs.Args(), func(id string) error {
		var b []byte
		var err error
		if *file == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(*file)
		}
		if err != nil {
			return err
		}
		var res specs.LinuxResources
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("decode resources %s: %w", *file, err)
		}
		return e.Update(ctx, id, &res)
	})
}
