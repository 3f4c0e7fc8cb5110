package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/atomicfile"
)

// File names of the pod files under the directory the caller chooses;
// containers get them bind-mounted at /etc/hostname, /etc/hosts and
// /etc/resolv.conf.
const (
	HostnameFile   = "hostname"
	HostsFile      = "hosts"
	ResolvConfFile = "resolv.conf"
)

// Host files copied into host-network pods, or when no DNS config is given.
const (
	hostHostsPath      = "/etc/hosts"
	hostResolvConfPath = "/etc/resolv.conf"
)

// defaultHosts is the hosts file of a pod with its own network namespace,
// the same entries other runtimes write. The kubelet usually mounts its own
// managed hosts file over it.
const defaultHosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
ff00::0	ip6-mcastprefix
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
`

// maxHostname is the kernel's HOST_NAME_MAX.
const maxHostname = 64

// HostEntry is one line of a hosts file.
type HostEntry struct {
	IP    string
	Names []string
}

// DNSConfig is the pod's DNS configuration (CRI DNSConfig).
type DNSConfig struct {
	Servers  []string
	Searches []string
	Options  []string
}

// WriteHostname writes dir/hostname.
func WriteHostname(dir, hostname string) error {
	if hostname == "" || len(hostname) > maxHostname || strings.ContainsAny(hostname, " \t\n/") {
		return errdefs.InvalidArgument("hostname %q", hostname)
	}
	return writeFileAtomic(filepath.Join(dir, HostnameFile), []byte(hostname+"\n"))
}

// WriteHosts writes dir/hosts. A host-network pod gets a copy of the host's
// /etc/hosts; any other pod gets the localhost entries followed by extra
// (typically the pod IPs with the hostname, once CNI has run).
func WriteHosts(dir string, hostNetwork bool, extra []HostEntry) error {
	return writeHosts(dir, hostNetwork, extra, hostHostsPath)
}

func writeHosts(dir string, hostNetwork bool, extra []HostEntry, hostPath string) error {
	var buf bytes.Buffer
	if hostNetwork {
		data, err := os.ReadFile(hostPath)
		switch {
		case err == nil:
			buf.Write(data)
			if len(data) > 0 && data[len(data)-1] != '\n' {
				buf.WriteByte('\n')
			}
		case errors.Is(err, fs.ErrNotExist):
			buf.WriteString(defaultHosts)
		default:
			return err
		}
	} else {
		buf.WriteString(defaultHosts)
	}
	for _, e := range extra {
		if e.IP == "" || len(e.Names) == 0 || hasSpace(e.IP) || hasSpace(e.Names...) {
			return errdefs.InvalidArgument("hosts entry %q %q", e.IP, e.Names)
		}
		fmt.Fprintf(&buf, "%s\t%s\n", e.IP, strings.Join(e.Names, " "))
	}
	return writeFileAtomic(filepath.Join(dir, HostsFile), buf.Bytes())
}

// WriteResolvConf writes dir/resolv.conf from dns, or copies the host's
// /etc/resolv.conf when dns is nil or empty (the CRI's "use the host's
// resolver" case, which is also what a host-network pod asks for).
func WriteResolvConf(dir string, dns *DNSConfig) error {
	return writeResolvConf(dir, dns, hostResolvConfPath)
}

func writeResolvConf(dir string, dns *DNSConfig, hostPath string) error {
	if dns == nil || len(dns.Servers)+len(dns.Searches)+len(dns.Options) == 0 {
		data, err := os.ReadFile(hostPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return writeFileAtomic(filepath.Join(dir, ResolvConfFile), data)
	}
	data, err := formatResolvConf(dns)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ResolvConfFile), data)
}

// formatResolvConf renders dns. Entries with whitespace would inject extra
// directives and are refused; limits on counts are the kubelet's business.
func formatResolvConf(dns *DNSConfig) ([]byte, error) {
	if hasSpace(dns.Servers...) || hasSpace(dns.Searches...) || hasSpace(dns.Options...) {
		return nil, errdefs.InvalidArgument("dns config %+v: entries must not contain whitespace", *dns)
	}
	var buf bytes.Buffer
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&buf, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&buf, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&buf, "options %s\n", strings.Join(dns.Options, " "))
	}
	return buf.Bytes(), nil
}

func hasSpace(ss ...string) bool {
	for _, s := range ss {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return true
		}
	}
	return false
}

// writeFileAtomic replaces path with data (mode 0644) so that a crash never
// leaves a half-written file. Replacing the inode means containers that
// already bind-mounted the old file keep it: write these files before the
// first container is created.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}
