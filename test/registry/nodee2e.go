package registry

import (
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Images the kubelet's node e2e suite of Kubernetes v1.37
// (k8s.io/kubernetes/test/utils/image, manifest.go) pulls, beyond critest's.
// Served only when Options.Agnhost is set (hack/node-e2e.sh).
const (
	agnhostTag     = "2.66.1" // imageutils.Agnhost
	agnhostPrevTag = "2.55"   // imageutils.AgnhostPrev
)

// nodeE2EAliases lists, for an image critest's set already has, the extra
// upstream names the node e2e suite pulls it under: the specs observe the
// same behaviour of these images as critest does (busybox applets, nginx on
// port 80, nnp's "Effective uid", pause blocking until signalled).
var nodeE2EAliases = map[string][]string{
	// glibc-dns-testing: "hostname -f" through the C library's resolver
	// and /etc/hosts, which Debian's (glibc-linked) busybox does.
	e2e + "busybox:1.29-2":      {e2e + "busybox:1.37.0-2", e2e + "glibc-dns-testing:2.1.1"}, // BusyBox, GlibcDnsTesting
	e2e + "nginx:1.14-2":        {e2e + "nginx:1.27.0-2", e2e + "nginx:1.28.0-2"},            // Nginx, NginxNew
	e2e + "nonewprivs:1.3":      {e2e + "nonewprivs:1.4"},                                    // Nonewprivs
	e2e + "httpd:2.4.39-4":      {e2e + "httpd:2.4.38-4"},                                    // e2e/common's httpd
	"registry.k8s.io/pause:3.9": {"registry.k8s.io/pause:3.10.2"},                            // imageutils.Pause
}

// agnhostAccounts are the account file lines agnhost's Dockerfile adds
// ("adduser -u 1000 user-defined-in-image", group 50000): the
// SupplementalGroupsPolicy specs read them back from the running container.
const (
	agnhostPasswd = "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
	agnhostGroup  = "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"
)

// curlScript stands in for curl, which upstream's agnhost image (Alpine)
// has and busybox does not: the networking specs exec "curl -g -q -s
// --max-time 15 --connect-timeout 1 http://IP:PORT/hostName" and similar in
// agnhost pods. It wraps busybox wget and keeps what the specs read: the
// body, -i headers, -w '%{http_code}', and curl's exit status 7 when no
// response came.
const curlScript = `#!/bin/sh
# curl stand-in for Skiff's agnhost image (upstream's has curl; busybox wget
# inside). Options the e2e suites use: -g -q -s -S -L -f -i -k -o FILE
# -w '%{http_code}' --max-time N --connect-timeout N; anything else fails.
out=- fmt= include= insecure= fail= maxtime= ctimeout= url=
while [ $# -gt 0 ]; do
	case "$1" in
	-g | --globoff | -q | -s | --silent | -S | --show-error | -L | --location) ;;
	-f | --fail) fail=1 ;;
	-i | --include) include=1 ;;
	-k | --insecure) insecure=--no-check-certificate ;;
	-o | --output) out=$2; shift ;;
	-w | --write-out) fmt=$2; shift ;;
	-m | --max-time) maxtime=$2; shift ;;
	--connect-timeout) ctimeout=$2; shift ;;
	-*) echo "curl: option $1 not supported by this stand-in" >&2; exit 2 ;;
	*) url=$1 ;;
	esac
	shift
done
[ -n "$url" ] || { echo "curl: no URL specified" >&2; exit 2; }
timeout=${maxtime:-$ctimeout}
dir=$(mktemp -d "${TMPDIR:-/tmp}/curl.XXXXXX") || exit 23
trap 'rm -rf "$dir"' EXIT
# -S: the response headers, indented by two spaces, on stderr. The time
# limit is timeout(1)'s: busybox 1.35's wget -T crashes.
${timeout:+timeout "$(((${timeout%.*} + 1)))"} wget -q -S $insecure -O "$dir/body" "$url" 2>"$dir/headers"
code=$(awk '/^  HTTP\// { c = $2 } END { print c }' "$dir/headers")
# -i: headers, a blank line, then the body, all to the output.
{
	if [ -n "$include" ] && [ -n "$code" ]; then
		sed -n 's/^  \(..*\)/\1/p' "$dir/headers"
		echo
	fi
	cat "$dir/body" 2>/dev/null
} >"$dir/out"
if [ "$out" = - ]; then
	cat "$dir/out"
else
	cat "$dir/out" >"$out"
fi
[ -n "$fmt" ] && printf '%s' "$fmt" | sed "s/%{http_code}/${code:-000}/g"
[ -n "$code" ] || exit 7 # no response: curl's "failed to connect"
[ -n "$fail" ] && [ "$code" -ge 400 ] && exit 22
exit 0
`

// addNodeE2E adds the node e2e names to set: aliases of critest's images,
// agnhost (the static binary at agnhostPath as /agnhost on the busybox base,
// ENTRYPOINT ["/agnhost"] CMD ["pause"] as upstream), nonroot (USER 1234)
// and ipc-utils (busybox has ipcs through the base layer's stand-in).
// localhost.crt and localhost.key next to the binary, if there, go to / as
// upstream ADDs them (agnhost porter and netexec serve HTTPS with them); so
// does an nc found there (below).
func (b *builder) addNodeE2E(ctx context.Context, set []Image, agnhostPath string) ([]Image, error) {
	for i := range set {
		for _, n := range set[i].Names {
			set[i].Names = append(set[i].Names, nodeE2EAliases[n]...)
		}
	}
	bin, err := os.ReadFile(agnhostPath)
	if err != nil {
		return nil, fmt.Errorf("agnhost binary (build with CGO_ENABLED=0 from k8s.io/kubernetes/test/images/agnhost): %w", err)
	}
	if err := requireStatic(agnhostPath); err != nil {
		return nil, err
	}
	var extras []entry
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(agnhostPath), f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		extras = append(extras, binary(f, 0o644, data))
	}
	// bash: upstream's agnhost (Alpine) has it and specs run "/bin/bash -c":
	// Debian's, with the shared libraries it loads.
	bash, err := hostProgram(ctx, "/bin/bash", "bin/bash")
	if err != nil {
		return nil, err
	}
	extras = append(extras, bash...)
	// nc: upstream's agnhost has netcat-openbsd, and the UDP specs run
	// "nc -w 1 -u IP PORT", an option busybox's nc lacks. Used if an nc
	// (Debian's nc.openbsd) is next to the agnhost binary.
	ncPath := filepath.Join(filepath.Dir(agnhostPath), "nc")
	if _, err := os.Stat(ncPath); err == nil {
		nc, err := hostProgram(ctx, ncPath, "usr/bin/nc")
		if err != nil {
			return nil, err
		}
		extras = append(extras, nc...)
	}
	// BestSpeed: the binary is tens of MB and is compressed at every start
	// of the registry; the pull is over loopback.
	gz, err := compress(append([]entry{
		binary("agnhost", 0o755, bin),
		file("usr/bin/curl", 0o755, curlScript),
		hardlink("agnhost-2", "agnhost", 0o755), // upstream: a symlink
		dir("uploads", 0o755),
		file("etc/passwd", 0o644, etcPasswd+agnhostPasswd),
		file("etc/group", 0o644, etcGroup+agnhostGroup),
		owned(dir("home/user-defined-in-image", 0o755), 1000, 1000),
	}, extras...), gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("agnhost layer: %w", err)
	}
	agn, err := b.image(false, b.arch, append(b.baseSteps(), step{createdBy: "ADD agnhost /agnhost (static build of test/images/agnhost), localhost.crt/key, a curl stand-in and its accounts", gz: gz}), v1.Config{
		Entrypoint:   []string{"/agnhost"},
		Cmd:          []string{"pause"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}},
	})
	if err != nil {
		return nil, err
	}
	idx, err := b.index(false, agn)
	if err != nil {
		return nil, err
	}
	set = append(set, Image{Names: []string{e2e + "agnhost:" + agnhostTag, e2e + "agnhost:" + agnhostPrevTag}, Index: idx})

	nonroot, err := b.image(false, b.arch, append(b.baseSteps(), step{createdBy: "USER 1234"}), v1.Config{Cmd: []string{"sh"}, User: "1234"})
	if err != nil {
		return nil, err
	}
	set = append(set, Image{Names: []string{e2e + "nonroot:1.5"}, Image: nonroot})

	ipc, err := b.busybox(false)
	if err != nil {
		return nil, err
	}
	set = append(set, Image{Names: []string{e2e + "ipc-utils:1.4"}, Image: ipc})

	// kitten: the image the ImageVolume specs mount; they read data.json
	// (naming kitten.jpg), etc/os-release (upstream's base is Alpine) and,
	// through a sub path, etc/passwd.
	kgz, err := compress([]entry{
		file("data.json", 0o644, `{"image": "kitten.jpg"}`+"\n"),
		binary("kitten.jpg", 0o644, []byte{0xff, 0xd8, 0xff, 0xd9}), // an empty JPEG
		file("etc/os-release", 0o644, "NAME=\"Skiff test image\"\nPRETTY_NAME=\"Skiff's stand-in for e2e-test-images/kitten (upstream: Alpine Linux)\"\n"),
	}, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("kitten layer: %w", err)
	}
	kitten, err := b.image(false, b.arch, append(b.baseSteps(), step{createdBy: "ADD kitten.jpg data.json /, os-release", gz: kgz}), v1.Config{Cmd: []string{"sh"}})
	if err != nil {
		return nil, err
	}
	set = append(set, Image{Names: []string{e2e + "kitten:1.8"}, Image: kitten})
	return set, nil
}

// requireStatic fails for a dynamically linked program: the image has no
// C library for it.
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// hostProgram returns layer entries for the host's program at path, stored
// as name, and every shared library it loads (by their host paths).
func hostProgram(ctx context.Context, path, name string) ([]entry, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	es := []entry{binary(name, 0o755, bin)}
	libs, err := sharedLibs(ctx, path)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		data, err := os.ReadFile(l)
		if err != nil {
			return nil, fmt.Errorf("%s needs %s: %w", path, l, err)
		}
		es = append(es, binary(l, 0o755, data))
	}
	return es, nil
}
