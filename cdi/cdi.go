// Package cdi resolves Container Device Interface devices
// (vendor.com/class=name) from the CDI spec files in the configured
// directories and injects them into OCI runtime specs: device nodes (with
// their device cgroup rules), mounts, environment variables and OCI hooks,
// through the reference library, tags.cncf.io/container-device-interface.
//
// The directories are not watched: the registry rescans them each time a
// container asks for devices, so a spec a device driver has just written
// is seen at once, no goroutine or inotify watch is held, and containers
// that ask for no device cost nothing.
package cdi

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	cdilib "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"

	"github.com/skiffcri/skiff/errdefs"
)

// Registry resolves devices from the CDI specs of its directories. It is
// safe for concurrent use.
type Registry struct {
	dirs  []string
	cache *cdilib.Cache
}

// New returns a registry over dirs, in increasing priority. With no dirs
// every request for a device fails.
func New(dirs []string) *Registry {
	r := &Registry{dirs: slices.Clone(dirs)}
	if len(dirs) > 0 {
		// Auto-refresh would start an inotify watcher goroutine per cache.
		r.cache, _ = cdilib.NewCache(cdilib.WithSpecDirs(dirs...), cdilib.WithAutoRefresh(false))
	}
	return r
}

// Dirs returns the directories searched.
func (r *Registry) Dirs() []string { return slices.Clone(r.dirs) }

// Requested returns the fully qualified device names a container asks
// for: the CRI config's CDI devices first, in order, then those of its
// cdi.k8s.io/* annotations (the form device plugins used before
// ContainerConfig.cdi_devices), by annotation key; each name once. A
// malformed name fails with errdefs.ErrInvalidArgument.
func Requested(names []string, annotations map[string]string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, n := range names {
		if _, _, _, err := parser.ParseQualifiedName(n); err != nil {
			return nil, errdefs.InvalidArgument("CDI device %q: %v", n, err)
		}
		add(n)
	}
	var keys []string
	for k := range annotations {
		if strings.HasPrefix(k, cdilib.AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		// The library's parser, one annotation at a time so that an error
		// names the annotation and the devices keep the keys' order.
		_, devs, err := cdilib.ParseAnnotations(map[string]string{k: annotations[k]})
		if err != nil {
			return nil, errdefs.InvalidArgument("annotation %s: %v", k, err)
		}
		for _, d := range devs {
			add(d)
		}
	}
	return out, nil
}

// Inject rescans the spec directories and applies the edits of devices
// (and of the specs defining them) to spec. A device that no spec defines
// fails with errdefs.ErrFailedPrecondition naming it and the directories
// searched, and with the reasons of any spec file that failed to load;
// spec is then unchanged.
func (r *Registry) Inject(spec *specs.Spec, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	if r.cache == nil {
		return errdefs.FailedPrecondition("CDI devices %s requested but no CDI spec directory is configured (cdi_spec_dirs)",
			strings.Join(devices, ", "))
	}
	// Refresh reports the spec files that failed to load; one broken spec
	// must not stop the devices of the others, so its error only explains
	// a device that is missing.
	_ = r.cache.Refresh()
	var missing []string
	for _, d := range devices {
		if r.cache.GetDevice(d) == nil {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("unresolvable CDI devices %s: no CDI spec in %s defines them",
			strings.Join(missing, ", "), strings.Join(r.dirs, ", "))
		if bad := r.loadErrors(); bad != "" {
			msg += " (CDI specs that failed to load: " + bad + ")"
		}
		return errdefs.FailedPrecondition("%s", msg)
	}
	// Applied to a copy, so that a failure half-way leaves spec as it was.
	edited, err := clone(spec)
	if err != nil {
		return err
	}
	unresolved, err := r.cache.InjectDevices(edited, devices...)
	if len(unresolved) > 0 {
		// Gone between the check and now: a spec file was removed.
		return errdefs.FailedPrecondition("unresolvable CDI devices %s: no CDI spec in %s defines them",
			strings.Join(unresolved, ", "), strings.Join(r.dirs, ", "))
	}
	if err != nil {
		return errdefs.FailedPrecondition("inject CDI devices %s: %v", strings.Join(devices, ", "), err)
	}
	*spec = *edited
	return nil
}

// loadErrors describes the spec files of the last refresh that failed to
// load, by path.
func (r *Registry) loadErrors() string {
	var out []string
	for path, errs := range r.cache.GetErrors() {
		out = append(out, path+": "+strings.ReplaceAll(errors.Join(errs...).Error(), "\n", "; "))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

var errNilSpec = errors.New("inject CDI devices: nil spec")

// clone deep-copies spec through its JSON form, which is the whole of it.
func clone(spec *specs.Spec) (*specs.Spec, error) {
	if spec == nil {
		return nil, errNilSpec
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("inject CDI devices: copy spec: %w", err)
	}
	var c specs.Spec
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("inject CDI devices: copy spec: %w", err)
	}
	return &c, nil
}
