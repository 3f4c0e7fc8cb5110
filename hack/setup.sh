#!/usr/bin/env bash
# Installs everything Skiff needs on a fresh Debian 12 machine that has Go and
# gcc: apt packages (busybox for test images, CNI plugins, iptables for
# portmap, runc + containerd for side-by-side benchmarks), Go tools, a default
# CNI config, and the skiffd/skiff-shim binaries in /usr/local/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
pkgs=(busybox-static containernetworking-plugins iptables iproute2 runc containerd util-linux)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's containerd package would start nothing without systemd, but make sure
# no stray instance holds its socket.
command -v staticcheck >/dev/null 2>&1 || GOBIN=/usr/local/bin go install honnef.co/go/tools/cmd/staticcheck@v0.8.2

# CNI: plugins from Debian live in /usr/lib/cni (one of skiffd's default bin
# dirs); install a default bridge network unless the admin has one.
mkdir -p /etc/cni/net.d
if ! ls /etc/cni/net.d/*.conf* >/dev/null 2>&1; then
	cp hack/cni/10-skiff-bridge.conflist /etc/cni/net.d/
fi

# crictl for the quick start and for critest.sh's clean-up, built from the
# same cri-tools release as the conformance suite.
want=$(sed -n 's/^version=v//p' hack/cri-tools.sh)
if ! /usr/local/bin/crictl --version 2>/dev/null | grep -q "$want"; then
	hack/cri-tools.sh crictl /usr/local/bin/crictl
fi

# crictl talks to skiffd by default unless the admin configured it already.
if [ ! -e /etc/crictl.yaml ]; then
	printf 'runtime-endpoint: unix:///run/skiff/skiff.sock\nimage-endpoint: unix:///run/skiff/skiff.sock\n' >/etc/crictl.yaml
fi

go build -o /usr/local/bin/skiffd ./cmd/skiffd
hack/build-shim.sh /usr/local/bin/skiff-shim
# On a machine that runs systemd, install the service unit (restarting
# skiffd must never kill pods: see the unit's comments). CI machines and
# containers without systemd skip this.
if [ -d /run/systemd/system ]; then
	install -m 0644 hack/skiffd.service /etc/systemd/system/skiffd.service
	systemctl daemon-reload
	echo "setup: installed skiffd.service (systemctl enable --now skiffd)"
fi
echo "setup: done (skiffd, skiff-shim, skiff-nsenter and crictl in /usr/local/bin)"
