package config

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		file     string // empty: no file
		explicit bool
		wantErr  bool
		check    func(t *testing.T, c Config)
	}{
		{name: "missing default file gives defaults", check: func(t *testing.T, c Config) {
			if c.Root != "/var/lib/skiff" || c.Listen != "unix:///run/skiff/skiff.sock" {
				t.Fatalf("defaults not applied: %+v", c)
			}
		}},
		{name: "missing explicit file is an error", explicit: true, wantErr: true},
		{name: "fields override defaults", explicit: true, file: `
root = "/tmp/r"
[image]
pull_stall_timeout = "5s"
insecure_registries = ["127.0.0.1:5000"]
[image.mirrors]
"docker.io" = ["http://127.0.0.1:5000/docker.io"]
[cni]
conf_dir = "/tmp/cni"
`, check: func(t *testing.T, c Config) {
			if c.Root != "/tmp/r" || c.State != "/run/skiff" {
				t.Errorf("root/state: %q %q", c.Root, c.State)
			}
			if c.Image.PullStallTimeout.Duration != 5*time.Second {
				t.Errorf("stall timeout %v", c.Image.PullStallTimeout)
			}
			if got := c.Image.Mirrors["docker.io"]; len(got) != 1 || got[0] != "http://127.0.0.1:5000/docker.io" {
				t.Errorf("mirrors %v", c.Image.Mirrors)
			}
			if c.CNI.ConfDir != "/tmp/cni" || len(c.CNI.BinDirs) != 2 {
				t.Errorf("cni %+v", c.CNI)
			}
		}},
		{name: "unknown field rejected", explicit: true, file: "rooot = \"/x\"\n", wantErr: true},
		{name: "bad listen rejected", explicit: true, file: "listen = \"tcp://1.2.3.4:1\"\n", wantErr: true},
		{name: "bad mirror rejected", explicit: true, file: "[image.mirrors]\n\"docker.io\" = [\"ftp://x\"]\n", wantErr: true},
		{name: "systemd driver rejected", explicit: true, file: "cgroup_driver = \"systemd\"\n", wantErr: true},
		{name: "bad duration rejected", explicit: true, file: "[image]\npull_stall_timeout = \"soon\"\n", wantErr: true},
		{name: "builtin runtime handler", explicit: true, file: "[runtimes.test-handler]\ntype = \"builtin\"\n", check: func(t *testing.T, c Config) {
			if c.Runtimes["test-handler"].Type != "builtin" {
				t.Errorf("runtimes %+v", c.Runtimes)
			}
		}},
		{name: "oci runtime handler", explicit: true, file: "state = \"/s\"\n[runtimes.runc]\ntype = \"oci\"\npath = \"/usr/sbin/runc\"\n[runtimes.crun]\ntype = \"oci\"\nroot = \"/run/crun-skiff\"\n", check: func(t *testing.T, c Config) {
			if rt := c.Runtimes["runc"]; rt.Type != RuntimeOCI || rt.Path != "/usr/sbin/runc" {
				t.Errorf("runc handler %+v", rt)
			}
			if got := c.RuntimeRoot("runc"); got != "/s/runtimes/runc" {
				t.Errorf("default root %q", got)
			}
			if got := c.RuntimeRoot("crun"); got != "/run/crun-skiff" {
				t.Errorf("configured root %q", got)
			}
		}},
		{name: "runtime handler of an unsupported type", explicit: true, file: "[runtimes.runc]\ntype = \"shim-v2\"\n", wantErr: true},
		{name: "oci runtime handler with a relative path", explicit: true, file: "[runtimes.runc]\ntype = \"oci\"\npath = \"runc\"\n", wantErr: true},
		{name: "oci runtime handler with a relative root", explicit: true, file: "[runtimes.runc]\ntype = \"oci\"\nroot = \"run/runc\"\n", wantErr: true},
		{name: "oci runtime handler named as the default", explicit: true, file: "[runtimes.skiff]\ntype = \"oci\"\n", wantErr: true},
		{name: "builtin runtime handler with a path", explicit: true, file: "[runtimes.x]\ntype = \"builtin\"\npath = \"/usr/sbin/runc\"\n", wantErr: true},
		{name: "runtime handler without a type", explicit: true, file: "[runtimes.x]\n", wantErr: true},
		{name: "cdi spec dirs default", check: func(t *testing.T, c Config) {
			if fmt.Sprint(c.CDISpecDirs) != "[/etc/cdi /var/run/cdi]" {
				t.Errorf("cdi_spec_dirs %v", c.CDISpecDirs)
			}
		}},
		{name: "cdi spec dirs set", explicit: true, file: "cdi_spec_dirs = [\"/tmp/cdi\"]\n", check: func(t *testing.T, c Config) {
			if fmt.Sprint(c.CDISpecDirs) != "[/tmp/cdi]" {
				t.Errorf("cdi_spec_dirs %v", c.CDISpecDirs)
			}
		}},
		{name: "relative cdi spec dir rejected", explicit: true, file: "cdi_spec_dirs = [\"cdi\"]\n", wantErr: true},
		{name: "runtime handler not a DNS label", explicit: true, file: "[runtimes.Test_Handler]\ntype = \"builtin\"\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(path, tt.explicit)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil && err == nil {
				tt.check(t, c)
			}
		})
	}
}
