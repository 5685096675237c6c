#!/usr/bin/env bash
# Makes this machine a VM lab host, idempotently: the Debian packages the box build and
# `vagrant up --provider=libvirt` need, and a running libvirtd (through systemd where it is
# PID 1, else the daemons started directly, as in a container). Used by `make vm-demo` and
# tests/vm (in `make test`); kept apart from scripts/setup.sh so that `make demo` and the
# other tiers do not pay for it.
set -euo pipefail
say() { printf '\033[1m[vm-host]\033[0m %s\n' "$*"; }
# shellcheck source=scripts/lib/apt.sh
source "$(dirname "$0")/../scripts/lib/apt.sh"

PACKAGES=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86
  qemu-utils debootstrap dnsmasq-base iptables e2fsprogs rsync openssh-client)
apt_ensure "${PACKAGES[@]}"

# Debian's udev rule gives /dev/kvm to group kvm (libvirt-qemu is in it); without udev it
# stays root-only, and libvirtd, finding KVM usable when it probes QEMU and unusable when it
# checks, then probes QEMU again on every call (seconds each): restore the rule's mode.
if [[ -c /dev/kvm && $(stat -c %G /dev/kvm) != kvm ]] && getent group kvm >/dev/null; then
  say "/dev/kvm: group kvm, mode 660 (as Debian's udev rule sets it)"
  chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi

if virsh -c qemu:///system uri >/dev/null 2>&1; then
  say "libvirtd: running"
elif [[ $(ps -p 1 -o comm= 2>/dev/null) == systemd ]]; then
  say "libvirtd: systemctl start"
  systemctl start virtlogd.socket libvirtd.service
else
  say "libvirtd: no systemd here; starting virtlogd and libvirtd directly"
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
fi
for _ in $(seq 30); do
  virsh -c qemu:///system uri >/dev/null 2>&1 && break
  sleep 0.5
done
virsh -c qemu:///system uri >/dev/null || { echo "vm-host: libvirtd does not answer" >&2; exit 1; }
vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt ||
  { echo "vm-host: vagrant does not see the vagrant-libvirt plugin" >&2; exit 1; }
say "ready: vagrant $(vagrant --version | awk '{print $2}') with vagrant-libvirt, libvirt $(virsh -c qemu:///system version --daemon 2>/dev/null | awk '/daemon/ {print $NF}')"
