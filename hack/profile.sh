#!/usr/bin/env bash
# Where RunPodSandbox, CreateContainer and friends spend their time: a
# throwaway skiffd (the test registry's images, the project's bridge
# network) runs under `strace -f -tt -T`, N pods go up and down through
# crictl, and the script prints, per RPC, skiffd's own duration (its debug
# log) and the slow steps of the last pod (execs of CNI plugins and the
# shim, fsyncs, mounts, waits) from the trace. docs/performance.md quotes
# its output, and the phases of RunPodSandbox, CreateContainer,
# RemoveContainer and StopPodSandbox that skiffd times itself (its "rpc
# steps" debug lines), median per phase. Not a benchmark: strace slows
# every syscall down; compare the steps, not the totals. PROFILE_STRACE=0
# runs skiffd without strace, for phase times at full speed.
#
# Run as root. Environment: PROFILE_PODS (default 5), PROFILE_STRACE
# (default 1), PROFILE_OUT (keep strace.txt, skiffd.log and shims.log there),
# SKIFF_TOOLS (busybox cache).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$PATH:/usr/local/go/bin"
tools=${SKIFF_TOOLS:-/opt/skiff-tools}
pods=${PROFILE_PODS:-5}
crictl=$(command -v crictl || echo /usr/local/bin/crictl)

if [ "$(id -u)" != 0 ]; then
	echo "profile.sh: must run as root" >&2
	exit 1
fi
work=$(mktemp -d /tmp/skiff-profile.XXXXXX)
chmod 0711 "$work"
bin=$work/bin state=$work/state
mkdir -p "$bin" "$state" "$work/cni" "$work/logs"
sock=$state/skiff.sock
skiffd_pid= registry_pid=
# shellcheck source=hack/lib.sh
. "$repo/hack/lib.sh"
log() { echo "profile.sh: $*" >&2; }

cleanup() {
	local rc=$? p exe root
	set +e
	trap - EXIT INT TERM
	if [ -n "$skiffd_pid" ] && [ -S "$sock" ]; then
		timeout 60 "$crictl" --runtime-endpoint "unix://$sock" rmp --all --force >/dev/null 2>&1
	fi
	kill_pid "$skiffd_pid" "strace+skiffd"
	kill_pid "$registry_pid" "test registry"
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		root=$(readlink "$p/root" 2>/dev/null) || root=
		case "$exe$root" in *"$work"*) kill -KILL "${p#/proc/}" 2>/dev/null ;; esac
	done
	unmount_under "$work"
	ip link del skprof0 2>/dev/null
	for h in /sys/fs/cgroup/*/; do
		[ -d "${h}skiff-profile" ] && find "${h}skiff-profile" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	if [ -n "${PROFILE_OUT:-}" ]; then
		mkdir -p "$PROFILE_OUT"
		cp -f "$work/skiffd.log" "$PROFILE_OUT/"
		cp -f "$work/strace.txt" "$work/shims.log" "$PROFILE_OUT/" 2>/dev/null
	fi
	rm -rf --one-file-system "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

busybox=$tools/busybox/bin/busybox
[ -x "$busybox" ] || busybox=/usr/bin/busybox
go build -o "$bin/skiffd" ./cmd/skiffd
hack/build-shim.sh "$bin/skiff-shim"
go build -o "$bin/testimages" ./hack/testimages
"$bin/testimages" --busybox "$busybox" --listen 127.0.0.1:0 --addr-file "$work/registry.addr" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 300); do [ -s "$work/registry.addr" ] && break; sleep 0.1; done
registry_addr=$(cat "$work/registry.addr")
# The project's bridge plugins on a network of the script's own, without
# masquerade rules and with the IPAM store in the temp dir.
cat >"$work/cni/10-profile.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "skiff-profile", "plugins": [
  {"type": "bridge", "bridge": "skprof0", "isGateway": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$work/ipam", "ranges": [[{"subnet": "10.215.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
cat >"$work/config.toml" <<EOF
root = "$work/root"
state = "$state"
listen = "unix://$sock"
log_level = "debug"
shim_binary = "$bin/skiff-shim"
stream_address = "127.0.0.1:0"

[cni]
conf_dir = "$work/cni"
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]

$("$bin/testimages" --busybox "$busybox" --print-mirrors-toml --listen "$registry_addr")
EOF
trace=${PROFILE_STRACE:-1}
if [ "$trace" = 1 ]; then
	strace -f -tt -T -qq -o "$work/strace.txt" \
		-e trace=execve,wait4,fsync,fdatasync,mount,umount2,unshare,setns,pivot_root,clone,clone3 \
		"$bin/skiffd" --config "$work/config.toml" >"$work/skiffd.log" 2>&1 &
else
	"$bin/skiffd" --config "$work/config.toml" >"$work/skiffd.log" 2>&1 &
fi
skiffd_pid=$!
for _ in $(seq 1 300); do [ -S "$sock" ] && break; sleep 0.1; done
cri() { "$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 60s "$@"; }
cri pull docker.io/library/busybox:1.36 >/dev/null
for i in $(seq 1 "$pods"); do
	cat >"$work/pod.json" <<EOF
{"metadata": {"name": "prof-$i", "namespace": "profile", "uid": "prof-uid-$i"}, "log_directory": "$work/logs/$i",
 "linux": {"cgroup_parent": "/skiff-profile"}}
EOF
	cat >"$work/ctr.json" <<EOF
{"metadata": {"name": "c"}, "image": {"image": "docker.io/library/busybox:1.36"}, "command": ["sleep", "3600"], "log_path": "c.log"}
EOF
	echo "--- pod $i" >>"$work/marks"
	date +%T.%N >>"$work/marks"
	pod=$(cri runp "$work/pod.json")
	ctr=$(cri create "$pod" "$work/ctr.json" "$work/pod.json")
	cri start "$ctr" >/dev/null
	cri stop -t 0 "$ctr" >/dev/null
	cri rm "$ctr" >/dev/null
	# The shim's log (the executor's create phases) goes with its stop.
	cat "$state/shims/$pod/shim.log" >>"$work/shims.log" 2>/dev/null || true
	cri stopp "$pod" >/dev/null
	cri rmp "$pod" >/dev/null
done
sleep 0.5

echo "== skiffd's RPC durations (its debug log), median of $pods"
for m in RunPodSandbox CreateContainer StartContainer StopContainer RemoveContainer StopPodSandbox RemovePodSandbox; do
	grep "method=/runtime.v1.RuntimeService/$m " "$work/skiffd.log" |
		sed -n 's/.* duration=\([0-9.]*\)\(ms\|µs\|s\).*/\1 \2/p' |
		awk '{ v = $1; if ($2 == "s") v *= 1000; else if ($2 == "µs") v /= 1000; print v }' | sort -n >"$work/d"
	n=$(wc -l <"$work/d")
	if [ "$n" -gt 0 ]; then printf '%-18s %8s ms (n=%d)\n' "$m" "$(sed -n "$(((n + 1) / 2))p" "$work/d")" "$n"; fi
done
echo "== phases skiffd and the shims timed (their \"rpc steps\" and \"create phases\" debug lines), median in ms of $pods"
# Each line: [rpc=NAME] id=ID phase=DURATION ...; durations as Go prints
# them. The executor's phases (in the shim) are part of CreateContainer's
# shim_create.
cat "$work/skiffd.log" "$work/shims.log" 2>/dev/null | grep -E 'msg="(rpc steps|create phases)"' | awk '
	function ms(v) {
		if (v ~ /µs$/) return substr(v, 1, length(v) - 2) / 1000
		if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
		if (v ~ /ns$/) return substr(v, 1, length(v) - 2) / 1e6
		if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
		return v + 0
	}
	{ rpc = "executor-Create"; for (i = 1; i <= NF; i++) if ($i ~ /^rpc=/) rpc = substr($i, 5)
	  started = 0
	  for (i = 1; i <= NF; i++) {
		if ($i ~ /^id=/) { started = 1; continue }
		if (!started || index($i, "=") == 0) continue
		split($i, kv, "="); k = rpc " " kv[1]
		if (!(k in n)) order[++nk] = k
		v[k, ++n[k]] = ms(kv[2])
	  } }
	END { for (j = 1; j <= nk; j++) { k = order[j]; m = n[k]
		for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (v[k, b] < v[k, a]) { t = v[k, a]; v[k, a] = v[k, b]; v[k, b] = t }
		printf "%-36s %8.2f\n", k, v[k, int((m + 1) / 2)] } }'
if [ "$trace" != 1 ]; then
	exit 0
fi
echo "== slow steps of the last pod (strace -f -T: execs, waits, fsyncs, mounts, clones; > 1 ms)"
last=$(tail -1 "$work/marks")
awk -v t="$last" '$2 >= t { k = split($NF, a, /[<>]/); if (k >= 2 && a[2] + 0 > 0.001) print }' "$work/strace.txt" |
	grep -E 'execve|wait4|fsync|fdatasync|mount|umount2|clone' | cut -c1-200 | head -80
echo "== syscall time, whole run (syscall, calls, seconds in them)"
awk '{ name = $3; if (name == "<...") name = $4; sub(/\(.*/, "", name)
	k = split($NF, a, /[<>]/); if (k >= 2 && a[2] != "") { t[name] += a[2]; c[name]++ } }
	END { for (x in t) printf "%-12s %6d %9.3f\n", x, c[x], t[x] }' "$work/strace.txt" | sort -k3 -rn
