# Helpers shared by the conformance runners (hack/critest.sh,
# hack/node-e2e.sh), sourced by them; each defines log() first.

# kill_pid PID NAME: SIGTERM, wait up to 20 s, then SIGKILL.
kill_pid() {
	local pid=$1 name=$2 i
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	log "$name ($pid) ignored SIGTERM; killing"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# unmount_under DIR: every mount at or below DIR, deepest first.
unmount_under() {
	local d=$1 m i t
	for i in 1 2 3; do
		m=$(findmnt -rn -o TARGET | awk -v w="$d" 'index($0, w "/") == 1 || $0 == w' | sort -r)
		[ -z "$m" ] && return 0
		while read -r t; do umount "$t" 2>/dev/null || umount -l "$t" 2>/dev/null; done <<<"$m"
	done
	m=$(findmnt -rn -o TARGET | awk -v w="$d" 'index($0, w "/") == 1 || $0 == w')
	[ -z "$m" ] || log "could not unmount: $m"
}
