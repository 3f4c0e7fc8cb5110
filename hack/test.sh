#!/usr/bin/env bash
# The project's test command: static checks, unit tests, root kernel tests
# (test/...), the critest conformance run and the kubelet's node e2e CI
# subset, each with its pass-count floor. Run as root after hack/setup.sh.
# SKIP_CRITEST=1 and SKIP_NODE_E2E=1 skip the conformance runs. The
# benchmarks' smoke run (hack/bench smoke, under a minute) fails the run on
# an error only, never on a number; SKIP_BENCH=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-clean:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
staticcheck ./...

echo "== unit tests"
go test -count=1 $(go list ./... | grep -v '/test/')

if [ "$(id -u)" = 0 ]; then
	echo "== kernel tests (root)"
	# One package at a time: they share the host's mounts, cgroups and iptables.
	go test -count=1 -p 1 -timeout 20m ./test/...
else
	echo "== kernel tests skipped: not root"
fi

if [ "${SKIP_CRITEST:-0}" != 1 ]; then
	echo "== critest"
	hack/critest.sh
	# The same suite with every pod on the runc handler (an OCI runtime
	# CLI driven by the shims), floor in hack/critest-runc-baseline.
	if [ -x /usr/sbin/runc ] && [ "${SKIP_CRITEST_RUNC:-0}" != 1 ]; then
		echo "== critest, runtime handler runc"
		CRITEST_RUNTIME_HANDLER=runc CRITEST_RUNTIME_PATH=/usr/sbin/runc hack/critest.sh
	fi
fi

# Every side-by-side benchmark at its smallest size, beside containerd 1.6:
# the harness works and cleans up; its numbers mean nothing here.
if [ "${SKIP_BENCH:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
	echo "== bench smoke"
	go run ./hack/bench smoke
fi

# The kubelet's own conformance suite, the CI subset against skiffd (the
# full run, both runtimes, is hack/node-e2e.sh; see the README). A cold
# cache builds the kubelet and e2e_node.test first (about 15 minutes).
if [ "${SKIP_NODE_E2E:-0}" != 1 ]; then
	echo "== node e2e ([NodeConformance] CI subset)"
	NODE_E2E_RUNTIME=skiff NODE_E2E_SUBSET=ci hack/node-e2e.sh
fi
