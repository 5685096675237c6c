#!/usr/bin/env bash
# Installs everything steer needs on a fresh Debian machine, idempotently: apt packages,
# kernel-header links for bcc, a bpffs mount, and .venv (from Debian's python so that the
# distro's bcc imports). Used by `make setup`, CI, the namespace lab and the Vagrant VMs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
# shellcheck source=scripts/lib/apt.sh
source scripts/lib/apt.sh

APT_PACKAGES=(python3-bpfcc bpfcc-tools libbpf1 linux-headers-amd64 clang llvm ethtool
  iproute2 iputils-ping python3-venv python3-dev gcc make nftables netsniff-ng tcpdump
  chromium redis-server vagrant strace time python3-nftables espeak-ng
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-good gstreamer1.0-plugins-base gstreamer1.0-nice
  gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0 python3-gi python3-gst-1.0
  golang-go golang-github-pion-webrtc.v3-dev coturn linux-perf dpkg-dev prometheus python3-yaml
  bird2 systemd)

had_prometheus=$(dpkg-query -W -f='${Status}' prometheus 2>/dev/null || true)
apt_ensure "${APT_PACKAGES[@]}"
# Debian's prometheus starts a service of its own (:9090, scraping this host); steer's lab
# runs its own (`steerctl lab up --prometheus`), so the one this script installed is
# stopped and disabled. One that was already installed is left as its owner set it up.
if [[ $had_prometheus != *"install ok installed"* ]] && command -v systemctl >/dev/null &&
  [[ -d /run/systemd/system ]]; then
  say "prometheus: stopping and disabling the package's own service"
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

# BIRD 2 announces the VIPs (pyctl/daemon/announce.py, docs/fleet.md). The package starts a
# system-wide bird on the root namespace's tables; steer runs its own, one per relay (and
# the lab's router), each with its own config and control socket: keep the system one off.
if systemctl is-enabled --quiet bird 2>/dev/null || systemctl is-active --quiet bird 2>/dev/null; then
  say "bird: stopping and disabling the system-wide instance (steer runs its own)"
  systemctl disable --now bird >/dev/null 2>&1 || true
fi

# bcc compiles against /lib/modules/$(uname -r)/build; this kernel ships no headers of its
# own, so point it at Debian's generic amd64 headers.
kdir=/lib/modules/$(uname -r)
if [[ ! -e $kdir/build/Makefile ]]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -1)
  common=$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -1)
  say "kernel headers: linking $kdir/build -> $hdr"
  mkdir -p "$kdir"
  ln -sfn "$hdr" "$kdir/build"
  ln -sfn "$common" "$kdir/source"
fi

if ! mountpoint -q /sys/fs/bpf; then
  say "mounting bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  say "creating .venv from /usr/bin/python3 (--system-site-packages, for bcc)"
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.steer-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || requirements.lock -nt $stamp ]]; then
  say "pip: installing steer and its pinned dependencies"
  .venv/bin/pip install -q --upgrade pip
  # --ignore-installed: Debian's older pyroute2 must not shadow the pinned one
  .venv/bin/pip install -q --ignore-installed -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  touch "$stamp"
fi

# WebRTC stacks from the npm registry for the interop tests (tests/interop/node, pinned by
# its package-lock.json), installed into that folder only
node_dir=tests/interop/node
if ! command -v npm >/dev/null; then
  say "apt: installing nodejs npm (for $node_dir)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [[ ! -f $node_dir/node_modules/.package-lock.json ||
  $node_dir/package-lock.json -nt $node_dir/node_modules/.package-lock.json ]]; then
  say "npm: installing the interop clients into $node_dir"
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >/dev/null
fi
# pion (Go) for the interop tests, built offline from Debian's sources in GOPATH mode (the
# go.mod beside main.go makes Go resolve pion's /v3 import paths there)
pion_dir=tests/interop/pion
if [[ ! -x $pion_dir/pion-whip || $pion_dir/main.go -nt $pion_dir/pion-whip ]]; then
  say "go: building the pion interop client into $pion_dir"
  gopath=$(mktemp -d)
  mkdir -p "$gopath/src"
  ln -s "$PWD/$pion_dir" "$gopath/src/pionwhip"
  pion_version=$(dpkg-query -W -f='${Version}' golang-github-pion-webrtc.v3-dev)
  pion_out=$PWD/$pion_dir/pion-whip
  (cd "$gopath/src/pionwhip" && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" \
    GOCACHE="$gopath/cache" go build -ldflags "-X main.version=$pion_version" -o "$pion_out" .)
  rm -rf "$gopath"
fi
# seed_go (bench/baselines/seed_go), the benchmark's Go relay: bench/build.py builds it
# into each run's scratch directory, offline, its Go cache in build/go; built once here so
# that cache holds the standard library (~10 s) and every later build takes under a second
if [[ ! -d build/go/cache ]]; then
  say "go: building seed_go once (its build cache in build/go)"
  seed_tmp=$(mktemp -d)
  .venv/bin/python -c "import sys, pathlib; from bench.build import seed_go_binary; \
seed_go_binary(pathlib.Path(sys.argv[1]))" "$seed_tmp"
  rm -rf "$seed_tmp"
fi
# a DTLS peer with RFC 9146 connection IDs (mbedTLS from Debian's source) for tests/e2e
bash scripts/cidpeer.sh
.venv/bin/steerctl --help >/dev/null
say "ready: .venv/bin/steerctl"
