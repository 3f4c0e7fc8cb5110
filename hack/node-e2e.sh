#!/usr/bin/env bash
# Node conformance: the kubelet's node e2e suite (k8s.io/kubernetes
# test/e2e_node, focus [NodeConformance], Kubernetes v1.37.2) against a
# throwaway skiffd and, side by side, against Debian's containerd 1.6 + runc.
#
# Everything is built offline from the Go module proxy through the wrapper
# module hack/node-e2e (k8s.io/kubernetes cannot be "go install"ed) and cached
# under $SKIFF_TOOLS/node-e2e-<version>/, so a warm run builds nothing of
# Kubernetes. The images the specs pull are served by hack/testimages
# (--agnhost) under their upstream names through registry mirrors.
#
# For each runtime it prints "node-e2e (<runtime>): N passed, M failed, K
# skipped" and the failed spec names, tears everything down (also on failure
# or Ctrl-C), and exits non-zero if skiffd passed fewer specs than
# hack/node-e2e-baseline (a full run) or hack/node-e2e-ci-baseline (the CI
# subset); a run narrowed by a focus or skip has no floor.
#
# Run as root. Environment:
#   NODE_E2E_RUNTIME  skiff | containerd | both (default both)
#   NODE_E2E_FOCUS    ginkgo focus regexp (default '\[NodeConformance\]')
#   NODE_E2E_SKIP     extra ginkgo skip regexp, added to the default skips
#   NODE_E2E_SUBSET   "ci": a short representative subset (see ci_focus below)
#   NODE_E2E_PROCS    parallel ginkgo processes (default 10: the specs mostly wait)
#   NODE_E2E_OUT      directory to keep junit-<runtime>.xml, failed-<runtime>.txt
#                     and the logs (e2e, kubelet, skiffd/containerd, registry)
#   NODE_E2E_TIMEOUT  ginkgo suite timeout (default 90m)
#   NODE_E2E_FEATURE_GATES  feature gates, "Name=true,Other=false", given to
#                     the suite (--feature-gates), which sets them on its
#                     kubelet and skips the specs upstream skips with them
#                     (PodAndContainerStatsFromCRI=true skips the cAdvisor
#                     ContainerMetrics spec); for example EventedPLEG=true
#                     has the kubelet use GetContainerEvents
#   SKIFF_TOOLS       cache directory (default /opt/skiff-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$PATH:/usr/local/go/bin"

k8s_version=v1.37.2
tools=${SKIFF_TOOLS:-/opt/skiff-tools}
cache=$tools/node-e2e-$k8s_version
baseline_file=$repo/hack/node-e2e-baseline
runtimes=${NODE_E2E_RUNTIME:-both}
procs=${NODE_E2E_PROCS:-10}
focus=${NODE_E2E_FOCUS:-'\[NodeConformance\]'}
# Serial specs reconfigure or restart the kubelet and must not share it
# with other specs; Slow and Flaky ones are left out of upstream's
# conformance jobs too.
skip='\[Serial\]|\[Slow\]|\[Flaky\]'
# NODE_E2E_SUBSET=ci: 57 specs across container lifecycle, probes, hooks,
# security context, volumes and the downward API; 74 s on skiffd here.
ci_focus='Container Runtime blackbox test|Pods should be submitted and removed|Security Context|Container Lifecycle Hook|Probing container should be restarted with a exec|Downward API|ConfigMap should be consumable from pods in volume \[|Secrets should be consumable from pods in volume \[|EmptyDir volumes should support \(root,0644,default\)'
case "${NODE_E2E_SUBSET:-}" in
"") ;;
ci) focus="\[NodeConformance\].*($ci_focus)|($ci_focus).*\[NodeConformance\]" ;;
*)
	echo "node-e2e.sh: unknown NODE_E2E_SUBSET ${NODE_E2E_SUBSET} (want ci)" >&2
	exit 2
	;;
esac
# The floor that applies: the full run's, or the CI subset's (which the
# README's test command runs); none for a run narrowed any other way.
floor_file=
if [ -z "${NODE_E2E_FOCUS:-}" ] && [ -z "${NODE_E2E_SKIP:-}" ]; then
	case "${NODE_E2E_SUBSET:-}" in
	"") floor_file=$baseline_file ;;
	ci) floor_file=$repo/hack/node-e2e-ci-baseline ;;
	esac
fi
if [ -n "${NODE_E2E_SKIP:-}" ]; then
	skip="$skip|$NODE_E2E_SKIP"
fi
case "$runtimes" in
both) runtimes="skiff containerd" ;;
skiff | containerd) ;;
*)
	echo "node-e2e.sh: NODE_E2E_RUNTIME must be skiff, containerd or both" >&2
	exit 2
	;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "node-e2e.sh: must run as root" >&2
	exit 1
fi

log() { echo "node-e2e.sh: $(date -u +%H:%M:%S) $*" >&2; }
# shellcheck source=hack/lib.sh
. "$repo/hack/lib.sh"

# --- cached builds ----------------------------------------------------------

# build_k8s NAME CMD...: run a build in the wrapper module into $cache/NAME
# (through NAME.tmp, so an interrupted build never leaves a binary behind).
build_k8s() {
	local name=$1
	shift
	[ -x "$cache/$name" ] && return 0
	mkdir -p "$cache"
	log "building $name ($k8s_version) into $cache (cold, all four took ~18 min on 2 cores, the test binary ~13)"
	local start=$SECONDS
	(cd hack/node-e2e && "$@" -o "$cache/$name.tmp" "${targets[$name]}")
	mv "$cache/$name.tmp" "$cache/$name"
	log "built $name in $((SECONDS - start))s"
}
declare -A targets=(
	[e2e_node.test]=k8s.io/kubernetes/test/e2e_node
	[kubelet]=k8s.io/kubernetes/cmd/kubelet
	[ginkgo]=github.com/onsi/ginkgo/v2/ginkgo
	[agnhost]=k8s.io/kubernetes/test/images/agnhost
)
# Kubernetes v1.37 needs Go 1.26 (its go.mod); the wrapper's go.mod says so
# and an older local go fetches the toolchain from the module proxy.
build_k8s e2e_node.test go test -c
build_k8s kubelet go build
build_k8s ginkgo go build
# Static: it runs in a busybox image that has no C library of its own.
build_k8s agnhost env CGO_ENABLED=0 go build
# agnhost's image has the porter test certificate at / (HTTPS servers of
# netexec and porter): from the module, next to the binary for testimages.
if [ ! -s "$cache/localhost.key" ]; then
	k8s_dir=$(cd hack/node-e2e && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
	cp "$k8s_dir/test/images/agnhost/porter/localhost.crt" "$k8s_dir/test/images/agnhost/porter/localhost.key" "$cache/"
fi

# netcat-openbsd for agnhost's image (the UDP specs run "nc -u", which
# busybox lacks): Debian's package, unpacked next to agnhost once. Its
# libraries (libbsd, libmd) come from the host, as bash's do.
if [ ! -x "$cache/nc" ]; then
	rm -rf "$cache/nc.deb"
	mkdir -p "$cache/nc.deb"
	if (cd "$cache/nc.deb" && apt-get download -q netcat-openbsd) >/dev/null 2>&1 &&
		dpkg-deb -x "$cache"/nc.deb/netcat-openbsd_*.deb "$cache/nc.deb/x" && [ -x "$cache/nc.deb/x/bin/nc.openbsd" ]; then
		cp "$cache/nc.deb/x/bin/nc.openbsd" "$cache/nc"
	else
		log "could not fetch Debian's netcat-openbsd; agnhost gets busybox nc (the UDP specs will fail)"
	fi
	rm -rf "$cache/nc.deb"
fi

# busybox for the images, as critest.sh: Debian's regular busybox package
# (never installed, which would replace busybox-static), unpacked once.
busybox=$tools/busybox/bin/busybox
if [ ! -x "$busybox" ]; then
	rm -rf "$tools/busybox.tmp" "$tools/busybox.deb"
	mkdir -p "$tools/busybox.deb"
	if (cd "$tools/busybox.deb" && apt-get download -q busybox) >/dev/null 2>&1 &&
		dpkg-deb -x "$tools"/busybox.deb/busybox_*.deb "$tools/busybox.tmp" && [ -x "$tools/busybox.tmp/bin/busybox" ]; then
		mv "$tools/busybox.tmp" "$tools/busybox"
	else
		rm -rf "$tools/busybox.tmp"
		busybox=/usr/bin/busybox
		log "could not fetch Debian's busybox package; building images from busybox-static"
	fi
	rm -rf "$tools/busybox.deb"
fi

# crictl removes the pods a run leaves behind through the runtime itself.
crictl=$(command -v crictl || true)
if [ -z "$crictl" ]; then
	crictl=$tools/crictl
	[ -x "$crictl" ] || hack/cri-tools.sh crictl "$crictl"
fi

# --- throwaway environment --------------------------------------------------

work=$(mktemp -d /tmp/skiff-node-e2e.XXXXXX)
chmod 0711 "$work"
bin=$work/bin
mkdir -p "$bin"
registry_pid=
runtime_pid=
runtime_sock=
runtime_name=
e2e_pid=
bridge=skne2e0
bridge_existed=false
ip link show "$bridge" >/dev/null 2>&1 && bridge_existed=true
# Host paths the kubelet and the suite use whatever we configure (the suite
# hard-codes /var/lib/kubelet and /tmp/insecure_test_key*): removed at the
# end only if this run created them.
host_dirs=(/var/lib/kubelet /var/log/pods /var/log/containers /run/containerd)
declare -A host_dir_existed=()
for d in "${host_dirs[@]}"; do
	[ -e "$d" ] && host_dir_existed[$d]=1
done
# Top-level cgroups the kubelet creates with cgroupRoot "/" and the
# cgroupfs driver.
kubelet_cgroups=(kubepods kubelet system docker-daemon)
declare -A cgroup_existed=()
for h in /sys/fs/cgroup/*/; do
	for c in "${kubelet_cgroups[@]}"; do
		[ -d "$h$c" ] && cgroup_existed[$h$c]=1
	done
done
# The kubelet sets these to its liking at start (protectKernelDefaults
# would make it refuse to start instead): put back what the host had.
kernel_tunables=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
declare -A tunable_was=()
for t in "${kernel_tunables[@]}"; do
	tunable_was[$t]=$(sysctl -n "$t")
done
touch "$work/start-marker"

# stop_runtime: remove what the run left (pods through the runtime, so CNI
# DEL releases IPs and veths), stop the kubelet (the suite does, unless it was
# killed), the runtime and every process it left.
stop_runtime() {
	local p exe root cmd netns
	[ -n "$runtime_name" ] || return 0
	# The suite's kubelet: started by e2e_node.test from $cache, which
	# stops it at the end; one left by a killed run is ours to end.
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		[ "$exe" = "$work/run-$runtime_name/kubelet" ] && kill -KILL "${p#/proc/}" 2>/dev/null
	done
	if [ -n "$runtime_pid" ] && kill -0 "$runtime_pid" 2>/dev/null && [ -S "$runtime_sock" ]; then
		# Network namespaces of containerd's pods live in /var/run/netns,
		# outside our directories: note them before removing the pods.
		netns=$(timeout 60 "$crictl" --runtime-endpoint "unix://$runtime_sock" --timeout 20s pods -q 2>/dev/null |
			while read -r p; do
				timeout 30 "$crictl" --runtime-endpoint "unix://$runtime_sock" inspectp "$p" 2>/dev/null |
					sed -n 's/.*"path": "\(\/var\/run\/netns\/[^"]*\)".*/\1/p'
			done | sort -u)
		timeout 180 "$crictl" --runtime-endpoint "unix://$runtime_sock" --timeout 60s rmp --all --force >/dev/null 2>&1 ||
			log "crictl rmp --all failed for $runtime_name"
		for p in $netns; do
			[ -e "$p" ] || continue
			log "removing leftover netns $p"
			umount "$p" 2>/dev/null
			rm -f "$p"
		done
	fi
	kill_pid "$runtime_pid" "$runtime_name"
	runtime_pid=
	if [ "$(readlink /run/containerd/containerd.sock 2>/dev/null)" = "$runtime_sock" ]; then
		rm -f /run/containerd/containerd.sock
	fi
	# Leftovers: skiffd's shims (our binary), containerd's shims (their
	# -address is our socket) and container processes (root in $work); the
	# registry serves the next runtime.
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = "$registry_pid" ] && continue
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		root=$(readlink "$p/root" 2>/dev/null) || root=
		cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || cmd=
		case "$exe|$root|$cmd" in
		*"$work"*)
			log "killing leftover process ${p#/proc/} ($exe)"
			kill -KILL "${p#/proc/}" 2>/dev/null
			;;
		esac
	done
	sleep 0.5
	unmount_under "$work/run-$runtime_name"
	unmount_under /var/lib/kubelet
	runtime_name=
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	kill_pid "$e2e_pid" e2e_node
	# An interrupted run: keep what it logged.
	if [ -n "${NODE_E2E_OUT:-}" ] && [ -n "$runtime_name" ]; then
		mkdir -p "$NODE_E2E_OUT"
		cp -f "$work/run-$runtime_name/e2e.log" "$NODE_E2E_OUT/e2e-$runtime_name.log"
		cp -f "$work/run-$runtime_name/runtime.log" "$NODE_E2E_OUT/$runtime_name.log"
	fi
	stop_runtime
	kill_pid "$registry_pid" "test registry"
	unmount_under "$work"
	if [ "$bridge_existed" = false ] && ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge"
	fi
	for d in "${host_dirs[@]}"; do
		if [ -z "${host_dir_existed[$d]:-}" ] && [ -e "$d" ]; then
			unmount_under "$d"
			rm -rf --one-file-system "$d"
		fi
	done
	# Kubelet cgroups, empty once the pods are gone: rmdir, deepest first.
	for h in /sys/fs/cgroup/*/; do
		for c in "${kubelet_cgroups[@]}"; do
			[ -d "$h$c" ] && [ -z "${cgroup_existed[$h$c]:-}" ] &&
				find "$h$c" -depth -type d -exec rmdir {} \; 2>/dev/null
		done
	done
	for t in "${kernel_tunables[@]}"; do
		[ "$(sysctl -n "$t")" = "${tunable_was[$t]}" ] || sysctl -q -w "$t=${tunable_was[$t]}"
	done
	# What the suite leaves in /tmp: its API server's key, embedded etcd's
	# data dir (kept when the suite is killed) and device plugin sockets.
	find /tmp -maxdepth 1 \( -name 'insecure_test_key*' -o -name 'TestE2eNode*' -o -name 'device-plugin-failures-*' \) \
		-newer "$work/start-marker" -exec rm -rf --one-file-system {} + 2>/dev/null
	rm -rf --one-file-system "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building skiffd, skiff-shim and the test image tool"
go build -o "$bin/skiffd" ./cmd/skiffd
hack/build-shim.sh "$bin/skiff-shim"
go build -o "$bin/testimages" ./hack/testimages

img_args=(--busybox "$busybox" --agnhost "$cache/agnhost")
"$bin/testimages" "${img_args[@]}" --listen 127.0.0.1:0 --addr-file "$work/registry.addr" >"$work/registry.log" 2>&1 &
registry_pid=$!
for i in $(seq 1 600); do
	[ -s "$work/registry.addr" ] && break
	kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; log "test registry exited"; exit 1; }
	sleep 0.1
done
[ -s "$work/registry.addr" ] || { log "test registry did not start"; exit 1; }
registry_addr=$(cat "$work/registry.addr")
log "test registry on $registry_addr"

# CNI: a network of our own (bridge, subnet, IPAM store in $work), so that
# neither runtime touches the host's networks or another runtime's leases.
# No ipMasq: the specs need no traffic off the node, and masquerade rules
# would outlive a killed run.
cni_conf_dir=$work/cni
mkdir -p "$cni_conf_dir"
cat >"$cni_conf_dir/10-node-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "skiff-node-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$work/cni-ipam",
        "ranges": [[{"subnet": "10.213.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
cni_bin_dirs=()
for d in /opt/cni/bin /usr/lib/cni; do
	[ -x "$d/bridge" ] && cni_bin_dirs+=("$d")
done
[ ${#cni_bin_dirs[@]} -gt 0 ] || { log "no CNI plugins in /opt/cni/bin or /usr/lib/cni (run hack/setup.sh)"; exit 1; }

# The suite runs the kubelet under systemd-run whenever that is on PATH, and
# Debian ships it without a running systemd. /bin and /sbin are symlinks to
# /usr on Debian 12, so /usr/bin is replaced by a directory of links to all
# of it but systemd-run (and systemctl, for the same reason).
shadow=$work/usr-bin
mkdir -p "$shadow"
for f in /usr/bin/*; do
	case "${f##*/}" in systemd-run | systemctl) continue ;; esac
	ln -s "$f" "$shadow/${f##*/}"
done
e2e_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:$shadow
[ -L /sbin ] || e2e_path=$e2e_path:/sbin
[ -L /bin ] || e2e_path=$e2e_path:/bin

start_skiff() {
	local dir=$1
	mkdir -p "$dir/root" "$dir/state"
	runtime_sock=$dir/state/skiff.sock
	cat >"$dir/config.toml" <<EOF
root = "$dir/root"
state = "$dir/state"
listen = "unix://$runtime_sock"
log_level = "debug"
cgroup_driver = "cgroupfs"
shim_binary = "$bin/skiff-shim"
stream_address = "127.0.0.1:0"

[cni]
conf_dir = "$cni_conf_dir"
bin_dirs = [$(printf '"%s", ' "${cni_bin_dirs[@]}" | sed 's/, $//')]

# The RuntimeClass handler the PodOverhead spec asks for, as upstream's node
# e2e jobs configure it (and this script does for containerd).
[runtimes.test-handler]
type = "builtin"

$("$bin/testimages" "${img_args[@]}" --print-mirrors-toml --listen "$registry_addr")
EOF
	"$bin/skiffd" --config "$dir/config.toml" >"$dir/runtime.log" 2>&1 &
	runtime_pid=$!
}

start_containerd() {
	local dir=$1
	mkdir -p "$dir/root" "$dir/state" "$dir/opt"
	runtime_sock=$dir/containerd.sock
	# containerd 1.6 config version 2. The sandbox image is the pause the
	# kubelet v1.37 names; runc with the cgroupfs driver, like skiffd here.
	cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$runtime_sock"

[ttrpc]
  address = "$runtime_sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.2"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE, so runc fails every sandbox (the
  # kubelet asks oom_score_adj -998) with "can't get final child's PID
  # from pipe"; this clamps to containerd's own score (0) instead, as
  # skiffd does.
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

# The RuntimeClass handler the suite's RuntimeClass and PodOverhead specs
# ask for, configured so by upstream's node e2e jobs too.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "${cni_bin_dirs[0]}"
  conf_dir = "$cni_conf_dir"
  max_conf_num = 1

$("$bin/testimages" "${img_args[@]}" --print-containerd-toml --listen "$registry_addr")
EOF
	/usr/bin/containerd --config "$dir/config.toml" >"$dir/runtime.log" 2>&1 &
	runtime_pid=$!
	# The kubelet's cadvisor finds containerd's containers (pod labels for
	# /metrics/cadvisor and the summary API) only through the default socket,
	# a path the kubelet cannot change: point it at ours when it is free.
	# /run/containerd goes at the end if this run created it.
	if [ ! -e /run/containerd/containerd.sock ] && [ -z "${host_dir_existed[/run/containerd]:-}" ]; then
		mkdir -p /run/containerd
		ln -s "$runtime_sock" /run/containerd/containerd.sock
	fi
}

# parse_junit FILE: sets passed, failed, skipped, failed_names. Specs the
# focus/skip filtered out are in the report as skipped without a message;
# "skipped" counts only specs that ran and skipped themselves (e2eskipper).
parse_junit() {
	local junit=$1 specs bad
	specs=$(tr '\n' ' ' <"$junit" | sed 's/<testcase /\n<testcase /g' | grep '^<testcase name="\[It\]' || true)
	bad='status="(failed|panicked|interrupted|aborted|timedout)"'
	passed=$(grep -c 'status="passed"' <<<"$specs" || true)
	failed=$(grep -c -E "$bad" <<<"$specs" || true)
	skipped=$(grep 'status="skipped"' <<<"$specs" | grep -c '<skipped message="skipped - ' || true)
	failed_names=$(grep -E "$bad" <<<"$specs" |
		sed -e 's/^<testcase name="\[It\] //' -e 's/" classname=.*//' \
			-e 's/&#34;/"/g; s/&quot;/"/g; s/&#39;/'"'"'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\&/g' || true)
}

# run_suite RUNTIME: one full pass of the suite against one runtime.
run_suite() {
	local rt=$1 dir=$work/run-$1 i start rc
	mkdir -p "$dir/report"
	runtime_name=$rt
	case "$rt" in
	skiff) start_skiff "$dir" ;;
	containerd) start_containerd "$dir" ;;
	esac
	for i in $(seq 1 300); do
		[ -S "$runtime_sock" ] && break
		kill -0 "$runtime_pid" 2>/dev/null || { tail -n 30 "$dir/runtime.log" >&2; log "$rt exited"; return 1; }
		sleep 0.1
	done
	[ -S "$runtime_sock" ] || { tail -n 30 "$dir/runtime.log" >&2; log "$rt did not create $runtime_sock"; return 1; }
	log "$rt running (pid $runtime_pid, log $dir/runtime.log)"

	# The suite starts the kubelet found next to its own binary.
	cp "$cache/e2e_node.test" "$cache/kubelet" "$dir/"
	# The base kubelet config (the suite adds its own settings): this host
	# is cgroup v1 without systemd, which v1.37 refuses unless told.
	cat >"$dir/kubelet-base.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /
failCgroupV1: false
failSwapOn: false
podCIDR: "10.100.0.0/24"
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
evictionHard:
  memory.available: 250Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
evictionMinimumReclaim:
  nodefs.available: 5%
  nodefs.inodesFree: 5%
serializeImagePulls: false
EOF
	local args=(
		--procs="$procs"
		--timeout="${NODE_E2E_TIMEOUT:-90m}"
		--no-color
		--focus="$focus"
		--skip="$skip"
		--junit-report=junit.xml
		--output-dir="$dir/report"
	)
	args+=(
		"$dir/e2e_node.test" --
		--container-runtime-endpoint="unix://$runtime_sock"
		--kubelet-config-file="$dir/kubelet-base.yaml"
		--prepull-images=false
		# The suite sets systemCgroups "/system" without systemd, and the
		# kubelet then moves every process of the root cgroup (the whole
		# machine's) into it; no system cgroup leaves them alone.
		--kubelet-flags=--system-cgroups=
		--node-name="$(hostname)"
		--report-dir="$dir/report"
		--v=2
	)
	if [ -n "${NODE_E2E_FEATURE_GATES:-}" ]; then
		args+=(--feature-gates="$NODE_E2E_FEATURE_GATES")
	fi
	log "running [NodeConformance] against $rt, $procs procs (log $dir/e2e.log)"
	start=$SECONDS
	# In the background, so that a signal to this script is handled at once
	# (bash runs traps only between foreground commands).
	(cd "$dir" && PATH=$e2e_path exec "$cache/ginkgo" "${args[@]}") >"$dir/e2e.log" 2>&1 &
	e2e_pid=$!
	set +e
	wait "$e2e_pid"
	rc=$?
	set -e
	e2e_pid=
	local took=$((SECONDS - start))

	passed=0 failed=0 skipped=0 failed_names=
	if [ -s "$dir/report/junit.xml" ]; then
		parse_junit "$dir/report/junit.xml"
	else
		tail -n 40 "$dir/e2e.log" >&2
		log "no junit report from the $rt run (ginkgo exit $rc)"
		failed=1 failed_names="(suite did not report: see e2e.log)"
	fi
	echo "node-e2e ($rt): $passed passed, $failed failed, $skipped skipped (${took}s)"
	if [ -n "$failed_names" ]; then
		echo "failed specs ($rt):"
		sed 's/^/  /' <<<"$failed_names"
	fi
	results[$rt]=$passed
	stop_runtime
	if [ -n "${NODE_E2E_OUT:-}" ]; then
		mkdir -p "$NODE_E2E_OUT"
		cp -f "$dir/report/junit.xml" "$NODE_E2E_OUT/junit-$rt.xml" 2>/dev/null || true
		cp -f "$dir/e2e.log" "$NODE_E2E_OUT/e2e-$rt.log"
		cp -f "$dir/runtime.log" "$NODE_E2E_OUT/$rt.log"
		cp -f "$work/registry.log" "$NODE_E2E_OUT/registry.log"
		# The suite's kubelet log (the report dir holds the services' logs).
		find "$dir/report" -maxdepth 2 -name 'kubelet.log' -exec cp -f {} "$NODE_E2E_OUT/kubelet-$rt.log" \; 2>/dev/null || true
		printf '%s\n' "$failed_names" | sed '/^$/d' >"$NODE_E2E_OUT/failed-$rt.txt"
	fi
}

declare -A results=()
for rt in $runtimes; do
	run_suite "$rt"
done

if [ -n "${results[skiff]:-}" ] && [ -n "$floor_file" ]; then
	floor=$(tr -dc '0-9' <"$floor_file")
	if [ "${results[skiff]}" -lt "${floor:-0}" ]; then
		log "skiffd passed ${results[skiff]} specs, below the floor of $floor in ${floor_file#"$repo"/}"
		exit 1
	fi
fi
