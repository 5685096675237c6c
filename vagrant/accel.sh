#!/usr/bin/env bash
# Which QEMU accelerator the VM lab's guests get: prints `kvm` or `tcg` (and why, on stderr).
# KVM only if a probe boot under KVM gets a kernel to its root mount: /dev/kvm existing is not
# enough (on some hosts the hypervisor runs only guests built for it, and a stock Debian
# kernel aborts or hangs under KVM). The probe boots the box's kernel (vagrant/.box/vmlinuz,
# else the host's /boot/vmlinuz-*) with no root device: it panics at "VFS: Unable to mount
# root fs" within a second under a working KVM. The answer is kept per host boot in
# vagrant/.lab/accel; STEER_VM_ACCEL=kvm|tcg overrides it (the Vagrantfile reads this script).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=$here/.lab/accel
boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
why() { echo "steer VM lab: QEMU accelerator $1 ($2)" >&2; }

if [[ -n ${STEER_VM_ACCEL:-} ]]; then
  why "$STEER_VM_ACCEL" "STEER_VM_ACCEL"
  echo "$STEER_VM_ACCEL"
  exit 0
fi
if [[ -f $cache ]] && read -r accel id reason <"$cache" && [[ $id == "$boot_id" ]]; then
  why "$accel" "$reason; probed this boot"
  echo "$accel"
  exit 0
fi

decide() {
  mkdir -p "$(dirname "$cache")"
  echo "$1 $boot_id $2" >"$cache"
  why "$1" "$2"
  echo "$1"
  exit 0
}
[[ -r /dev/kvm && -w /dev/kvm ]] || decide tcg "no usable /dev/kvm"
kernel=$here/.box/vmlinuz
[[ -f $kernel ]] || kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[[ -n $kernel && -f $kernel ]] || decide kvm "/dev/kvm present; no kernel to probe with"
qemu=$(command -v qemu-system-x86_64) || decide tcg "no qemu-system-x86_64 to probe with"
log=$(mktemp)
t0=$(date +%s%N)
timeout 20 "$qemu" -accel kvm -cpu host -m 256 -smp 1 -nodefaults -nographic -no-reboot \
  -serial "file:$log" -kernel "$kernel" -append "console=ttyS0 panic=-1" >"$log.err" 2>&1 || true
ms=$((($(date +%s%N) - t0) / 1000000))
if grep -q -e "VFS: Unable to mount root" -e "Kernel panic" "$log"; then
  rm -f "$log" "$log.err"
  decide kvm "a KVM probe boot reached the root mount in ${ms} ms"
fi
err=$(grep -m1 -o -e "failed to set MSR[^\"]*" -e "KVM[^\"]*" "$log.err" | head -1 || true)
lines=$(wc -l <"$log")
rm -f "$log" "$log.err"
decide tcg "a KVM probe boot did not reach the root mount (${err:-hung after $lines console lines})"
