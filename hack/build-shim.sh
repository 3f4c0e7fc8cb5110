#!/usr/bin/env bash
# Builds skiff-shim as it is installed: static (no libc mapped into every
# pod's shim), with cgo for the pre-runtime stage that joins user
# namespaces (oci/nsenter). Every build of the shim goes through here.
#
#   hack/build-shim.sh OUT [extra go build flags]
set -euo pipefail
out=${1:?usage: build-shim.sh OUT [go build flags]}
shift
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
CGO_ENABLED=1 exec go build -tags netgo,osusergo -ldflags '-extldflags=-static' "$@" -o "$out" ./cmd/skiff-shim
