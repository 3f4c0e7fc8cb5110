#!/usr/bin/env bash
# The project's test command: static checks, unit tests, root kernel tests
# (test/...), and the critest conformance run with its pass-count floor.
# Run as root after hack/setup.sh. SKIP_CRITEST=1 skips the conformance run.
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
fi
