#!/usr/bin/env bash
# Builds skiff-shim as it is installed, and skiff-nsenter beside it. Every
# build of the shim goes through here.
#
#   hack/build-shim.sh OUT [extra go build flags for skiff-shim]
#
# skiff-shim: static, without cgo (no C runtime mapped into every pod's
# shim; SHIM_CGO=1 for a -race build). skiff-nsenter, in OUT's directory:
# the pre-runtime stage that joins user namespaces, a C constructor, hence
# cgo, linked statically.
set -euo pipefail
out=${1:?usage: build-shim.sh OUT [go build flags]}
shift
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
CGO_ENABLED=${SHIM_CGO:-0} go build "$@" -o "$out" ./cmd/skiff-shim
CGO_ENABLED=1 go build -tags netgo,osusergo -ldflags '-extldflags=-static' \
	-o "$(dirname "$out")/skiff-nsenter" ./cmd/skiff-nsenter
