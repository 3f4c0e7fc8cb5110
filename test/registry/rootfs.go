package registry

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

// DefaultBusybox is Debian's busybox-static binary (package busybox-static).
// It is statically linked, so it runs in an image with nothing else in it.
const DefaultBusybox = "/usr/bin/busybox"

// Standard account files, modelled on the official busybox image: the users
// and groups critest's images refer to by name (www-data) must exist here.
const (
	etcPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	etcGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`
	etcOSRelease = `NAME="Skiff test image"
ID=skiff-test
PRETTY_NAME="Skiff test image (Debian busybox-static)"
HOME_URL="https://github.com/skiffcri/skiff"
`
)

// pgrepScript stands in for pgrep, which Debian's busybox-static lacks and
// critest runs ("pgrep sleep || true" after an exec timeout). It matches the
// extended regular expression against process names, like procps pgrep.
const pgrepScript = `#!/bin/sh
# pgrep stand-in for Skiff's test images: Debian's busybox-static has no pgrep
# applet. Prints the PID of every process whose name (/proc/PID/comm) matches
# the extended regular expression PATTERN; exit status 1 if none does.
if [ $# -ne 1 ]; then
	echo "usage: pgrep PATTERN" >&2
	exit 2
fi
found=1
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	[ "$pid" = "$$" ] && continue
	read -r comm < "$d/comm" 2>/dev/null || continue
	case "$comm" in pgrep) continue ;; esac
	if echo "$comm" | grep -qE -- "$1"; then
		echo "$pid"
		found=0
	fi
done
exit $found
`

// ipcsScript stands in for ipcs, which Debian's busybox-static lacks and
// critest's IPC namespace specs run ("ipcs -m"). It reads /proc/sysvipc, so it
// shows exactly the objects of the caller's IPC namespace.
const ipcsScript = `#!/bin/sh
# ipcs stand-in for Skiff's test images: Debian's busybox-static has no ipcs
# applet. Lists the System V IPC objects of this IPC namespace from
# /proc/sysvipc in util-linux's layout. Options: -m, -q, -s, -a (default).
m= q= s=
[ $# -eq 0 ] && set -- -a
for a in "$@"; do
	case "$a" in
	-m) m=1 ;;
	-q) q=1 ;;
	-s) s=1 ;;
	-a) m=1 q=1 s=1 ;;
	*) echo "ipcs: unsupported option $a (want -m, -q, -s or -a)" >&2; exit 1 ;;
	esac
done
show() { # kind file title header... ; columns: key id perms <a> <b> via awk
	awk -v kind="$1" -v title="$3" '
	BEGIN {
		while ((getline l < "/etc/passwd") > 0) { split(l, f, ":"); user[f[3]] = f[1] }
		printf "\n------ %s --------\n", title
		if (kind == "m") printf "%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status"
		if (kind == "q") printf "%-10s %-10s %-10s %-10s %-12s %-12s\n", "key", "msqid", "owner", "perms", "used-bytes", "messages"
		if (kind == "s") printf "%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems"
	}
	FNR == 1 { next }
	{
		key = $1 + 0; if (key < 0) key += 4294967296
		if (kind == "m") uid = $8; else if (kind == "q") uid = $8; else uid = $5
		owner = (uid in user) ? user[uid] : uid
		if (kind == "m") printf "0x%08x %-10s %-10s %-10s %-10s %-10s %-12s\n", key, $2, owner, $3, $4, $7, ""
		if (kind == "q") printf "0x%08x %-10s %-10s %-10s %-12s %-12s\n", key, $2, owner, $3, $4, $5
		if (kind == "s") printf "0x%08x %-10s %-10s %-10s %-10s\n", key, $2, owner, $3, $4
	}
	END { print "" }' "$2"
}
[ -n "$m" ] && show m /proc/sysvipc/shm "Shared Memory Segments"
[ -n "$q" ] && show q /proc/sysvipc/msg "Message Queues"
[ -n "$s" ] && show s /proc/sysvipc/sem "Semaphore Arrays"
exit 0
`

// nmeterScript stands in for nmeter, which neither of Debian's busybox builds
// has and the node e2e suite's container lifecycle specs run for a
// millisecond timestamp ("date -u +%FT$(nmeter -d0 '%3t' | head -n1)Z").
// Only the time field is supported: %t is HH:MM:SS, %Nt adds N decimals.
// busybox date has no sub-second format, so the time is the boot time
// (/proc/stat btime) plus /proc/uptime: to 10 ms, the same clock in every
// container, which is what the specs compare the stamps against.
const nmeterScript = `#!/bin/sh
# nmeter stand-in for Skiff's test images (only the %t and %Nt time fields).
delay=1000 fmt=
while [ $# -gt 0 ]; do
	case "$1" in
	-d) delay=$2; shift 2 ;;
	-d*) delay=${1#-d}; shift ;;
	-*) echo "nmeter: unsupported option $1" >&2; exit 1 ;;
	*) fmt=$1; shift ;;
	esac
done
while :; do
	awk -v fmt="$fmt" 'BEGIN {
		getline up < "/proc/uptime"; split(up, u, " ")
		while ((getline l < "/proc/stat") > 0) if (l ~ /^btime /) { split(l, b, " "); bt = b[2] }
		t = bt + u[1]; s = int(t); frac = sprintf("%03d", int((t - s) * 1000 + 0.5) % 1000)
		hms = sprintf("%02d:%02d:%02d", int(s % 86400 / 3600), int(s % 3600 / 60), s % 60)
		out = ""
		while (match(fmt, /%[0-9]?t/)) {
			n = RLENGTH == 3 ? substr(fmt, RSTART + 1, 1) + 0 : 0
			out = out substr(fmt, 1, RSTART - 1) hms (n > 0 ? "." substr(frac, 1, n) : "")
			fmt = substr(fmt, RSTART + RLENGTH)
		}
		print out fmt
	}' || exit 1
	[ "$delay" -gt 0 ] && usleep $((delay * 1000))
done
`

// busyboxRoot reads the busybox binary and its applet list.
type busyboxRoot struct {
	binary  []byte
	applets []string
	// libs holds, for a dynamically linked busybox (Debian's "busybox"
	// package rather than "busybox-static"), its ELF interpreter and shared
	// libraries by absolute path.
	libs map[string][]byte
}

func loadBusybox(ctx context.Context, path string) (*busyboxRoot, error) {
	if path == "" {
		path = DefaultBusybox
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read busybox (Debian package busybox-static): %w", err)
	}
	out, err := exec.CommandContext(ctx, path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", path, err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		a := strings.TrimSpace(sc.Text())
		if a == "" || a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list: no applets", path)
	}
	sort.Strings(applets)
	libPaths, err := sharedLibs(ctx, path)
	if err != nil {
		return nil, err
	}
	libs := map[string][]byte{}
	for _, p := range libPaths {
		if libs[p], err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("busybox %s needs %s: %w", path, p, err)
		}
	}
	return &busyboxRoot{binary: bin, applets: applets, libs: libs}, nil
}

// sharedLibs lists the files a dynamically linked program loads at run time,
// its ELF interpreter and every shared library as ldd resolves them on this
// host; nil for a static binary.
func sharedLibs(ctx context.Context, path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	dynamic := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	f.Close()
	if !dynamic {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 3 && fields[1] == "=>" && strings.HasPrefix(fields[2], "/"):
			libs = append(libs, fields[2])
		case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
			libs = append(libs, fields[0])
		case len(fields) >= 3 && fields[1] == "=>" && fields[2] == "not":
			return nil, fmt.Errorf("ldd %s: %s not found", path, fields[0])
		}
	}
	sort.Strings(libs)
	return libs, nil
}

// binEntries is the first layer of every runnable image: /bin/busybox (and
// the shared libraries a dynamic busybox needs), a hard link in /bin for each applet, /usr/bin/env for "#!/usr/bin/env"
// scripts, and the pgrep, ipcs and (when busybox lacks it) nmeter stand-ins.
func (b *busyboxRoot) binEntries() []entry {
	es := []entry{dir("bin", 0o755), binary("bin/busybox", 0o755, b.binary)}
	libs := make([]string, 0, len(b.libs))
	for p := range b.libs {
		libs = append(libs, p)
	}
	sort.Strings(libs)
	for _, p := range libs {
		es = append(es, binary(p, 0o755, b.libs[p]))
	}
	// Hard links, as in the official busybox image: a runtime masking one
	// applet (critest masks /bin/ls) bind-mounts over that name only, where
	// a symlink would resolve to /bin/busybox and mask every applet.
	for _, a := range b.applets {
		es = append(es, hardlink("bin/"+a, "bin/busybox", 0o755))
	}
	if !slices.Contains(b.applets, "nmeter") {
		es = append(es, file("bin/nmeter", 0o755, nmeterScript))
	}
	es = append(es,
		file("bin/pgrep", 0o755, pgrepScript),
		file("bin/ipcs", 0o755, ipcsScript),
		dir("usr", 0o755), dir("usr/bin", 0o755),
		hardlink("usr/bin/env", "bin/busybox", 0o755),
	)
	return es
}

// etcEntries is the second layer: accounts and the usual directory tree.
func etcEntries() []entry {
	return []entry{
		dir("dev", 0o755),
		dir("etc", 0o755),
		file("etc/passwd", 0o644, etcPasswd),
		file("etc/group", 0o644, etcGroup),
		file("etc/os-release", 0o644, etcOSRelease),
		file("etc/nsswitch.conf", 0o644, "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"),
		dir("home", 0o755),
		dir("proc", 0o555),
		dir("root", 0o700),
		dir("sys", 0o555),
		dir("tmp", 0o1777),
		dir("usr/local/bin", 0o755),
		dir("usr/sbin", 0o755),
		dir("var", 0o755),
		dir("var/spool/mail", 0o755),
		dir("var/www", 0o755),
	}
}
