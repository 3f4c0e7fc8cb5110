// Package shim is the client side of skiff-shim, the long-lived per-pod
// process that owns the pod's containers while skiffd comes and goes: Start
// and Connect, the Client and its request and state types, the durable exit
// records (ReadExitFile, WriteExitFile), watching a shim process
// (WaitExit, IsShimProcess, PidFromFile) and RuntimeCLI, which drives the
// executor's own command line for the clean-up after a shim is gone. The
// daemon itself is package shim/daemon; skiffd links this package only,
// never the daemon or the executor.
//
// The shim is a child subreaper: it launches containers through a runtime
// (the oci executor in production), reaps every process that ends below it,
// writes container stdout and stderr to the kubelet's log file in the CRI
// format (package crilog), and records each exit in <state dir>/exit.json
// with fsync before any client hears of it. It never depends on skiffd: a
// killed daemon reconnects with Connect and finds the containers still
// running and still logging, or reads the exit records.
//
// # Protocol
//
// One request per connection on the unix socket <dir>/shim.sock: the client
// writes one JSON object (a request) followed by a newline, the shim answers
// with one JSON object (a response) and closes the connection. A client that
// closes its end early cancels the request (Wait, ExecSync). Errors carry a
// kind ("not_found", "already_exists", "invalid_argument",
// "failed_precondition", "unavailable", "unimplemented",
// "resource_exhausted", "deadline_exceeded") that the client maps back onto
// the errdefs sentinels (RemoteError). The envelopes, operation names and
// frame codec live in shim/internal/wire, shared with the daemon; the
// bodies are this package's types.
//
// Interactive exec and attach (Client.Exec, Client.Attach) keep their
// connection open after the request line and exchange frames: a type byte,
// a big-endian uint32 length and the payload. The client sends stdin data,
// stdin close and terminal resizes; the shim sends stdout and stderr data
// and a last exit frame (a JSON result). Attach sessions get the
// container's output from the moment they attach (earlier output is in the
// log); a session that falls 256 chunks behind is cut off so that the
// container and its log never wait for a slow client.
//
// # Process model
//
// Start runs "skiff-shim daemon", which re-executes itself in a new session
// with stdio on /dev/null (stderr on <dir>/shim.log) and exits once the
// socket is up, so the shim is re-parented away from skiffd at once. With
// SharePID the shim first starts the pod init (skiff-nsenter, installed
// beside the shim, as "skiff-pod-init": a small C process), PID 1 of a new
// PID namespace that the pod's containers join and that reaps their
// orphans.
//
// When a shim died, what it held is cleaned up through the same binary's
// executor CLI ("skiff-shim runtime", see RuntimeCLI): its containers'
// processes, executor state and cgroups, and the pod init's cgroup. The
// executor's state thus has one owner, the executor, whichever process
// runs it.
package shim
