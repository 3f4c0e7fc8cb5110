package registry

// Programs of the server, pause and no-new-privs images. Each stands in for
// the upstream program (nginx, Apache httpd, pause, nnp) with busybox, and
// keeps exactly what critest observes of it; the comments say what that is.

// nginxScript: critest reads /var/run/nginx.pid, looks for "master process"
// in /proc/1/cmdline (ContainerPID), finds the process with "pidof nginx"
// from a host-PID container (the kernel names a script process after the
// script file, so this shell is "nginx"), and fetches "/" over HTTP. The
// port comes from /etc/nginx/port (80, or 12003 in hostnet-nginx). The
// shell stays PID 1 and turns SIGTERM/SIGINT/SIGQUIT into a clean exit,
// which httpd as PID 1 would ignore.
const nginxScript = `#!/bin/sh
# nginx stand-in for Skiff's offline critest images (busybox httpd inside).
if [ "$1" != "nginx: master process" ]; then
	exec /usr/sbin/nginx "nginx: master process" "$@"
fi
shift
port=$(cat /etc/nginx/port 2>/dev/null || echo 80)
echo $$ > /var/run/nginx.pid
echo "nginx: master process started (pid $$), serving /usr/share/nginx/html on port $port"
httpd -f -v -p "$port" -h /usr/share/nginx/html &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; rm -f /var/run/nginx.pid; exit 0' TERM INT QUIT
wait $child
`

// httpdScript: critest expects "httpd" in the container's log and an HTTP
// server on port 80 (multi-container specs).
const httpdScript = `#!/bin/sh
# Apache httpd stand-in for Skiff's offline critest images (busybox httpd inside).
echo "httpd: serving /usr/local/apache2/htdocs on port 80"
httpd -f -v -p 80 -h /usr/local/apache2/htdocs &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT QUIT WINCH
wait $child
`

// pauseScript: the pause image's entrypoint, run as a container's default
// command by critest's image-ID consistency specs (and as the sandbox by
// runtimes that use one). It blocks in the shell's own "read" on a FIFO, so
// it has no child that could outlive it in a host PID namespace, and exits
// 0 on SIGINT or SIGTERM, like the pause binary.
const pauseScript = `#!/bin/sh
# pause stand-in for Skiff's offline critest images.
trap 'exit 0' INT TERM
fifo=$(mktemp -u /tmp/pause.XXXXXX)
if mkfifo "$fifo" 2>/dev/null && exec 3<>"$fifo"; then
	rm -f "$fifo"
	while :; do read -t 3600 x <&3; done
fi
# Read-only /tmp: no FIFO; sleep in place (killable, no child left behind).
exec sleep 2147483647
`

// nnpScript: the no-new-privs image runs as uid 1000 and prints the effective
// uid of a setuid-root program, "Effective uid: 0" unless no_new_privs keeps
// the kernel from honouring the setuid bit. busybox-nnp is a setuid-root copy
// of busybox; /etc/busybox.conf lets its "id" applet keep root. When the
// kernel did not grant root, busybox cannot read the config (mode 0600) and
// its "id" reports the plain uid.
const nnpScript = `#!/bin/sh
# nonewprivs stand-in for Skiff's offline critest images.
# busybox "id" shows euid=N only when it differs from the real uid.
ids=$(/usr/local/bin/busybox-nnp id)
case "$ids" in
*" euid="*)
	euid=${ids#* euid=}
	euid=${euid%%[!0-9]*}
	;;
*) euid=$(id -u) ;;
esac
echo "Effective uid: $euid"
`

// busyboxConf grants the setuid busybox copy's "id" applet euid 0 for
// everyone (busybox's FEATURE_SUID_CONFIG: mode "ssx" = setuid, setgid,
// executable by others; owner root, group 0).
const busyboxConf = `[SUID]
id = ssx root.0
`

const indexHTML = `<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>Skiff test image.</p></body>
</html>
`

const itWorksHTML = "<html><body><h1>It works!</h1></body></html>\n"
