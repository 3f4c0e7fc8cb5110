#!/usr/bin/env bash
# Builds one tool of cri-tools (crictl or critest) at the release the project
# conforms to, from the Go module proxy, into OUT:
#
#	hack/cri-tools.sh crictl|critest OUT
#
# The one place that names the cri-tools version.
set -euo pipefail
version=v1.36.0
tool=${1:?usage: cri-tools.sh crictl|critest OUT}
out=${2:?usage: cri-tools.sh crictl|critest OUT}
export PATH="$PATH:/usr/local/go/bin"

moddir=$(go mod download -json "sigs.k8s.io/cri-tools@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$moddir" ] || { echo "cri-tools.sh: go mod download sigs.k8s.io/cri-tools@$version failed" >&2; exit 1; }
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$moddir" "$src/cri-tools"
chmod -R u+w "$src/cri-tools"
mkdir -p "$(dirname "$out")"
cd "$src/cri-tools"
case "$tool" in
crictl)
	GOFLAGS=-mod=mod CGO_ENABLED=0 go build \
		-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$version" -o "$out.tmp" ./cmd/crictl
	;;
critest)
	GOFLAGS=-mod=mod go test -c ./cmd/critest -o "$out.tmp"
	;;
*)
	echo "cri-tools.sh: unknown tool $tool (crictl or critest)" >&2
	exit 2
	;;
esac
mv "$out.tmp" "$out"
