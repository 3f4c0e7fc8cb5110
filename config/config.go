// Package config holds skiffd's configuration: one TOML file whose every
// field has a default, so the daemon runs with no file at all.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where skiffd looks for its config when --config is not given.
const DefaultPath = "/etc/skiff/config.toml"

// Config is the whole daemon configuration.
type Config struct {
	// Root holds state of record that survives reboots (meta.db, content, layers).
	Root string `toml:"root"`
	// State holds runtime state that dies with the machine (socket, namespaces, shims).
	State string `toml:"state"`
	// Listen is the gRPC endpoint, unix://PATH.
	Listen string `toml:"listen"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `toml:"log_level"`
	// CgroupDriver is reported to the kubelet; only cgroupfs is supported.
	CgroupDriver string `toml:"cgroup_driver"`
	// ShimBinary is the skiff-shim executable; empty means next to skiffd, then $PATH.
	ShimBinary string `toml:"shim_binary"`
	// StreamAddress is where exec, attach and port-forward streams are
	// served (host:port; port 0 picks a free one). Keep it on loopback: the
	// streams are unauthenticated, as with other runtimes' defaults.
	StreamAddress string `toml:"stream_address"`
	// CDISpecDirs are the directories of CDI specs, in increasing
	// priority, that containers' CDI devices are resolved from; empty
	// turns CDI off (containers asking for devices fail).
	CDISpecDirs []string `toml:"cdi_spec_dirs"`

	Image ImageConfig `toml:"image"`
	CNI   CNIConfig   `toml:"cni"`
	// Runtimes are the runtime handlers (RuntimeClass handler names) pods
	// may name besides the default, "" and "skiff".
	Runtimes map[string]RuntimeConfig `toml:"runtimes"`
}

// Runtime handler types.
const (
	// RuntimeBuiltin is Skiff's own executor, the default handler's.
	RuntimeBuiltin = "builtin"
	// RuntimeOCI is an OCI runtime CLI (runc, crun, runsc) that the pod's
	// shim drives through the OCI runtime command line.
	RuntimeOCI = "oci"
)

// RuntimeConfig is one runtime handler.
type RuntimeConfig struct {
	// Type is RuntimeBuiltin or RuntimeOCI.
	Type string `toml:"type"`
	// Path is the OCI runtime's executable (type "oci"); empty means the
	// handler's name looked up on $PATH when skiffd starts.
	Path string `toml:"path"`
	// Root is the OCI runtime's state directory, its --root (type "oci");
	// empty means <state>/runtimes/<name>.
	Root string `toml:"root"`
}

// RuntimeRoot returns the state directory of handler name's OCI runtime:
// its configured root, else one under the daemon's state directory.
func (c *Config) RuntimeRoot(name string) string {
	if r := c.Runtimes[name].Root; r != "" {
		return r
	}
	return filepath.Join(c.State, "runtimes", name)
}

// dnsLabel is what Kubernetes accepts as a RuntimeClass handler.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ImageConfig configures pulls.
type ImageConfig struct {
	// Mirrors maps an upstream registry host to endpoints tried in order
	// before the upstream itself: scheme://host[:port][/path-prefix].
	Mirrors map[string][]string `toml:"mirrors"`
	// InsecureRegistries may be reached over plain HTTP or unverified TLS.
	InsecureRegistries []string `toml:"insecure_registries"`
	// PullStallTimeout aborts a pull whose download makes no progress this long.
	PullStallTimeout Duration `toml:"pull_stall_timeout"`
	// MaxLayerSize bounds the unpacked size of one layer in bytes; 0 is unlimited.
	MaxLayerSize int64 `toml:"max_layer_size"`
}

// CNIConfig locates CNI network configs and plugins.
type CNIConfig struct {
	ConfDir string   `toml:"conf_dir"`
	BinDirs []string `toml:"bin_dirs"`
}

// Duration is a time.Duration that reads from TOML strings like "90s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration the way UnmarshalText reads it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Default returns the configuration used when no file sets a field.
func Default() Config {
	return Config{
		Root:          "/var/lib/skiff",
		State:         "/run/skiff",
		Listen:        "unix:///run/skiff/skiff.sock",
		LogLevel:      "info",
		CgroupDriver:  "cgroupfs",
		StreamAddress: "127.0.0.1:0",
		CDISpecDirs:   []string{"/etc/cdi", "/var/run/cdi"},
		Image: ImageConfig{
			Mirrors:          map[string][]string{},
			PullStallTimeout: Duration{time.Minute},
		},
		CNI: CNIConfig{
			ConfDir: "/etc/cni/net.d",
			BinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"},
		},
	}
}

// Load reads path over the defaults. A missing file at DefaultPath is not an
// error (the daemon runs on defaults); a missing file named explicitly is.
func Load(path string, explicit bool) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return c, nil
		}
		return c, fmt.Errorf("read config %s: %w", path, err)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("config %s: unknown fields: %s", path, strings.Join(keys, ", "))
	}
	return c, c.Validate()
}

// Validate rejects values the daemon cannot run with.
func (c *Config) Validate() error {
	if _, err := SocketPath(c.Listen); err != nil {
		return err
	}
	if c.Root == "" || c.State == "" {
		return errors.New("config: root and state must be set")
	}
	if c.CgroupDriver != "cgroupfs" {
		return fmt.Errorf("config: cgroup_driver %q is not supported (only cgroupfs)", c.CgroupDriver)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	for name, rt := range c.Runtimes {
		if !dnsLabel.MatchString(name) {
			return fmt.Errorf("config: runtime handler %q is not a DNS label, as RuntimeClass handlers are", name)
		}
		if err := rt.validate(name); err != nil {
			return err
		}
	}
	for _, d := range c.CDISpecDirs {
		if !strings.HasPrefix(d, "/") {
			return fmt.Errorf("config: cdi_spec_dirs: %q is not an absolute path", d)
		}
	}
	for host, eps := range c.Image.Mirrors {
		for _, ep := range eps {
			u, err := url.Parse(ep)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("config: mirror %q for %s: want http(s)://host[:port][/prefix]", ep, host)
			}
		}
	}
	return nil
}

func (rt RuntimeConfig) validate(name string) error {
	switch rt.Type {
	case RuntimeBuiltin:
		if rt.Path != "" || rt.Root != "" {
			return fmt.Errorf("config: runtime handler %q: path and root are for type %q only (the built-in executor has its own)", name, RuntimeOCI)
		}
	case RuntimeOCI:
		// "skiff" is the default handler's other name (the runtime's own).
		if name == "skiff" {
			return fmt.Errorf("config: runtime handler %q is the default handler's name; give the OCI runtime another", name)
		}
		if rt.Path != "" && !filepath.IsAbs(rt.Path) {
			return fmt.Errorf("config: runtime handler %q: path %q is not absolute", name, rt.Path)
		}
		if rt.Root != "" && !filepath.IsAbs(rt.Root) {
			return fmt.Errorf("config: runtime handler %q: root %q is not absolute", name, rt.Root)
		}
	case "":
		return fmt.Errorf("config: runtime handler %q: type is missing (want %q or %q)", name, RuntimeBuiltin, RuntimeOCI)
	default:
		return fmt.Errorf("config: runtime handler %q: type %q is not supported (want %q, the built-in executor, or %q, an OCI runtime CLI)", name, rt.Type, RuntimeBuiltin, RuntimeOCI)
	}
	return nil
}

// SocketPath extracts the filesystem path of a unix:// endpoint.
func SocketPath(listen string) (string, error) {
	p, ok := strings.CutPrefix(listen, "unix://")
	if !ok || p == "" || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("config: listen %q: want unix:///absolute/path", listen)
	}
	return p, nil
}
