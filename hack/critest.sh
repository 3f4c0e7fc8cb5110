#!/usr/bin/env bash
# Conformance run: critest v1.36.0 against a throwaway skiffd that pulls the
# project's own test images (hack/testimages) through registry mirrors.
#
# Prints "critest: N passed, M failed, K skipped" and the failed spec names,
# tears everything down (also on failure or Ctrl-C), and exits non-zero if N
# is below the number in hack/critest-baseline.
#
# Run as root. Environment:
#   CRITEST_FOCUS  ginkgo focus regexp, e.g. 'Image Manager' (default: all specs)
#   CRITEST_OUT    directory to keep junit.xml, failed.txt, critest.log, skiffd.log
#   SKIFF_TOOLS    cache for the critest binary and Debian's busybox package
#                  (default /opt/skiff-tools; both are fetched when missing)
#   CRITEST_TIMEOUT  ginkgo suite timeout (default 2h)
#   CRITEST_RUNTIME_HANDLER  run every spec on this runtime handler, configured
#                  as an OCI runtime CLI ([runtimes.<name>] type "oci"), e.g.
#                  runc; the pass floor is then hack/critest-<name>-baseline
#   CRITEST_RUNTIME_PATH  that runtime's executable (default: <name> on $PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$PATH:/usr/local/go/bin"

tools=${SKIFF_TOOLS:-/opt/skiff-tools}
critest=$tools/critest
crictl=$(command -v crictl || echo /usr/local/bin/crictl)
baseline_file=$repo/hack/critest-baseline
handler=${CRITEST_RUNTIME_HANDLER:-}
handler_path=
if [ -n "$handler" ]; then
	handler_path=${CRITEST_RUNTIME_PATH:-$(command -v "$handler" || true)}
	if [ -z "$handler_path" ] || [ ! -x "$handler_path" ]; then
		echo "critest.sh: runtime handler $handler: no executable (set CRITEST_RUNTIME_PATH)" >&2
		exit 1
	fi
	baseline_file=$repo/hack/critest-$handler-baseline
fi

# Specs that cannot pass on an offline machine, skipped rather than counted
# as failures. Keep this list minimal and say why for each entry.
skips=(
	# Pulls gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...:
	# only the upstream registry has a manifest with that digest, and a
	# rebuilt image cannot reproduce it (the tag is served, the digest not).
	'public image with digest should be pulled and removed'
)
# Runtime handlers skip nothing more here. What runc 1.1.5 cannot do, critest
# skips by itself from Status: runc 1.1 has no idmapped mounts (its features
# document lacks linux.mountExtensions.idmap), so the handler reports
# user_namespaces false, RunPodSandbox refuses user-namespaced pods on it, and
# critest skips its 6 "Security Context UserNamespaces" specs.

if [ "$(id -u)" != 0 ]; then
	echo "critest.sh: must run as root" >&2
	exit 1
fi

work=$(mktemp -d /tmp/skiff-critest.XXXXXX)
chmod 0711 "$work"
bin=$work/bin
state=$work/state
mkdir -p "$bin" "$state" "$work/root" "$work/report"
sock=$state/skiff.sock
skiffd_pid=
registry_pid=
critest_pid=

log() { echo "critest.sh: $*" >&2; }
# shellcheck source=hack/lib.sh
. "$repo/hack/lib.sh"

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [ -n "$skiffd_pid" ] && kill -0 "$skiffd_pid" 2>/dev/null && [ -S "$sock" ] && [ -x "$crictl" ]; then
		# Pods critest left behind (an interrupted run): let skiffd release
		# their IPs, netns, mounts and cgroups the proper way.
		timeout 120 "$crictl" --runtime-endpoint "unix://$sock" --timeout 30s rmp --all --force >/dev/null 2>&1
	fi
	kill_pid "$critest_pid" critest
	kill_pid "$skiffd_pid" skiffd
	kill_pid "$registry_pid" "test registry"
	# Whatever skiffd started and left running: shims (our binary) and
	# container processes (root inside our temp dir), by PID.
	local p exe root
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		root=$(readlink "$p/root" 2>/dev/null) || root=
		case "$exe$root" in
		*"$work"*)
			log "killing leftover process ${p#/proc/} ($exe)"
			kill -KILL "${p#/proc/}" 2>/dev/null
			;;
		esac
	done
	# Mounts under the temp dir (rootfs overlays, /dev/shm, netns bind
	# mounts), deepest first.
	unmount_under "$work"
	if [ -n "${CRITEST_OUT:-}" ]; then
		mkdir -p "$CRITEST_OUT"
		cp -f "$work/report/junit.xml" "$work/critest.log" "$work/skiffd.log" "$work/registry.log" "$CRITEST_OUT/" 2>/dev/null
	fi
	rm -rf --one-file-system "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# critest: built once from the Go module proxy into $tools, then reused.
if [ ! -x "$critest" ]; then
	log "building critest into $critest"
	hack/cri-tools.sh critest "$critest"
fi

# busybox for the test images: Debian's regular "busybox" package, unpacked
# into $tools once. Unlike busybox-static it has no standalone shell, so
# "sh -c ls" runs /bin/ls as upstream busybox images do (critest's
# MaskedPaths spec masks /bin/ls). busybox-static if the download fails.
busybox=$tools/busybox/bin/busybox
if [ ! -x "$busybox" ]; then
	rm -rf "$tools/busybox.tmp"
	mkdir -p "$tools" "$work/deb"
	if (cd "$work/deb" && apt-get download -q busybox) >/dev/null 2>&1 &&
		dpkg-deb -x "$work"/deb/busybox_*.deb "$tools/busybox.tmp" && [ -x "$tools/busybox.tmp/bin/busybox" ]; then
		mv "$tools/busybox.tmp" "$tools/busybox"
	else
		rm -rf "$tools/busybox.tmp"
		busybox=/usr/bin/busybox
		log "could not fetch Debian's busybox package; building images from busybox-static (MaskedPaths spec will fail)"
	fi
fi

log "building skiffd, skiff-shim and the test image tool"
go build -o "$bin/skiffd" ./cmd/skiffd
hack/build-shim.sh "$bin/skiff-shim"
go build -o "$bin/testimages" ./hack/testimages

"$bin/testimages" --busybox "$busybox" --listen 127.0.0.1:0 --addr-file "$work/registry.addr" >"$work/registry.log" 2>&1 &
registry_pid=$!
for i in $(seq 1 300); do
	[ -s "$work/registry.addr" ] && break
	kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; log "test registry exited"; exit 1; }
	sleep 0.1
done
[ -s "$work/registry.addr" ] || { log "test registry did not start"; exit 1; }
registry_addr=$(cat "$work/registry.addr")
log "test registry on $registry_addr"

# CNI: the host's networks, or the project's bridge network if it has none.
cni_conf_dir=/etc/cni/net.d
if ! ls "$cni_conf_dir"/*.conf* >/dev/null 2>&1; then
	cni_conf_dir=$work/cni
	mkdir -p "$cni_conf_dir"
	cp hack/cni/*.conflist "$cni_conf_dir/"
	log "no CNI config in /etc/cni/net.d; using hack/cni"
fi

cat >"$work/config.toml" <<EOF
root = "$work/root"
state = "$state"
listen = "unix://$sock"
log_level = "debug"
cgroup_driver = "cgroupfs"
shim_binary = "$bin/skiff-shim"
stream_address = "127.0.0.1:0"

[cni]
conf_dir = "$cni_conf_dir"
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
$(if [ -n "$handler" ]; then printf '\n[runtimes.%s]\ntype = "oci"\npath = "%s"\n' "$handler" "$handler_path"; fi)

$("$bin/testimages" --busybox "$busybox" --print-mirrors-toml --listen "$registry_addr")
EOF

"$bin/skiffd" --config "$work/config.toml" >"$work/skiffd.log" 2>&1 &
skiffd_pid=$!
for i in $(seq 1 300); do
	[ -S "$sock" ] && break
	kill -0 "$skiffd_pid" 2>/dev/null || { tail -n 30 "$work/skiffd.log" >&2; log "skiffd exited"; exit 1; }
	sleep 0.1
done
[ -S "$sock" ] || { tail -n 30 "$work/skiffd.log" >&2; log "skiffd did not create $sock"; exit 1; }
log "skiffd running (pid $skiffd_pid, log $work/skiffd.log)"

# Specs run one at a time: critest's --parallel defaults to 1 (and Ginkgo
# rejects the flag when it is set explicitly, even to 1).
args=(
	--runtime-endpoint "unix://$sock"
	--image-endpoint "unix://$sock"
	--ginkgo.no-color
	--ginkgo.timeout "${CRITEST_TIMEOUT:-2h}"
	--ginkgo.junit-report "$work/report/junit.xml"
	--report-dir "$work/report"
)
for s in "${skips[@]}"; do
	args+=(--ginkgo.skip "$s")
done
if [ -n "${CRITEST_FOCUS:-}" ]; then
	args+=(--ginkgo.focus "$CRITEST_FOCUS")
fi
if [ -n "$handler" ]; then
	args+=(--runtime-handler "$handler")
	log "every pod on runtime handler $handler ($handler_path)"
fi

log "running critest (log $work/critest.log)"
# In the background, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands) and stops critest too.
(cd "$work" && exec "$critest" "${args[@]}") >"$work/critest.log" 2>&1 &
critest_pid=$!
set +e
wait "$critest_pid"
critest_rc=$?
set -e
critest_pid=

junit=$work/report/junit.xml
if [ -s "$junit" ]; then
	# One <testcase> per spec; setup nodes ([BeforeSuite] ...) are not specs.
	specs=$(grep -o '<testcase name="\[It\][^"]*"[^>]*status="[a-z]*"' "$junit" || true)
	bad='status="(failed|panicked|interrupted|aborted|timedout)"'
	passed=$(grep -c 'status="passed"' <<<"$specs" || true)
	skipped=$(grep -c -E 'status="(skipped|pending)"' <<<"$specs" || true)
	failed=$(grep -c -E "$bad" <<<"$specs" || true)
	failed_names=$(grep -E "$bad" <<<"$specs" |
		sed -e 's/^<testcase name="\[It\] //' -e 's/" classname=.*//' -e 's/"[^"]*status=.*//' \
			-e 's/&#34;/"/g; s/&quot;/"/g; s/&#39;/'"'"'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\&/g' || true)
else
	# No report (critest crashed early): fall back to ginkgo's summary line,
	# e.g. "FAIL! -- 60 Passed | 17 Failed | 0 Pending | 43 Skipped".
	summary=$(grep -E '[0-9]+ Passed \| [0-9]+ Failed' "$work/critest.log" | tail -n 1 || true)
	passed=$(sed -n 's/.* \([0-9]*\) Passed.*/\1/p' <<<"$summary")
	failed=$(sed -n 's/.* \([0-9]*\) Failed.*/\1/p' <<<"$summary")
	skipped=$(sed -n 's/.* \([0-9]*\) Skipped.*/\1/p' <<<"$summary")
	failed_names=$(sed -n 's/^  \[FAIL\] //p' "$work/critest.log" || true)
	if [ -z "$summary" ]; then
		tail -n 40 "$work/critest.log" >&2
		log "critest produced no report (exit $critest_rc)"
	fi
fi
passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0}

echo "critest: $passed passed, $failed failed, $skipped skipped"
if [ -n "$failed_names" ]; then
	echo "failed specs:"
	sed 's/^/  /' <<<"$failed_names"
fi
if [ -n "${CRITEST_OUT:-}" ]; then
	mkdir -p "$CRITEST_OUT"
	printf '%s\n' "$failed_names" | sed '/^$/d' >"$CRITEST_OUT/failed.txt"
fi

# The handler's pods ran on its runtime: their shims made its root.
if [ -n "$handler" ] && [ ! -d "$state/runtimes/$handler" ]; then
	log "no pod ran on runtime handler $handler ($state/runtimes/$handler is missing)"
	exit 1
fi

baseline=
if [ -f "$baseline_file" ]; then
	baseline=$(tr -dc '0-9' <"$baseline_file")
fi
baseline=${baseline:-0}
if [ -n "${CRITEST_FOCUS:-}" ]; then
	log "focused run ('$CRITEST_FOCUS'): baseline $baseline not enforced"
elif [ "$passed" -lt "$baseline" ]; then
	log "pass count $passed is below the baseline $baseline ($(basename "$baseline_file"))"
	exit 1
fi
exit 0
