#!/usr/bin/env bash
# Builds the VM lab's libvirt box offline, from Debian's packages only, and registers it with
# `vagrant box add` as steer/bookworm-lab. No box is downloaded: debootstrap makes a Debian 12
# root file system; the cloud kernel (linux-image-cloud-amd64, which boots under QEMU's TCG
# too) and its headers (bcc compiles the data plane against them) go in with what the role
# scripts need (bcc, nftables, ethtool, iproute2) and BIRD 2 (the relay's announcement and
# the client VM's upstream router); steer's pinned Python dependencies are installed into
# /steer/.venv from PyPI (the synced folder leaves .venv alone, so a VM starts with a ready
# venv and only steer's source is copied in at `vagrant up`). The Vagrant user has
# Vagrant's well-known insecure key, which Vagrant replaces on first boot.
#
# The box boots its kernel directly (libvirt's <kernel>/<initrd>, set by the box's own
# Vagrantfile): the disk is one ext4 file system, made with `mkfs.ext4 -d` (no loop device,
# no partition table, no boot loader).
#
#   vagrant/build-box.sh          build if missing or stale (the stamp: this script,
#                                 box.Vagrantfile, requirements.lock and pyproject.toml),
#                                 then `vagrant box add`
#   vagrant/build-box.sh --force  rebuild
#
# Output in vagrant/.box/ (git-ignored): rootfs/ is removed after; the .box file is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=$here/.box
box_name=steer/bookworm-lab
mirror=${STEER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${STEER_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
say() { printf '\033[1m[box]\033[0m %s\n' "$*"; }

stamp=$(cat "$0" "$here/box.Vagrantfile" "$root/requirements.lock" "$root/pyproject.toml" |
  sha256sum | cut -c1-16)
if [[ ${1:-} != --force ]] && [[ -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]] &&
  vagrant box list 2>/dev/null | grep -q "^$box_name "; then
  say "$box_name is current (stamp $stamp); --force rebuilds"
  exit 0
fi

for tool in debootstrap mkfs.ext4 qemu-img vagrant; do
  command -v "$tool" >/dev/null || { echo "build-box: $tool missing (vagrant/host-setup.sh installs it)" >&2; exit 1; }
done

t0=$(date +%s)
mkdir -p "$out"
rootfs=$out/rootfs
cleanup() {
  for m in dev/pts dev proc sys; do mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m"; done
  return 0
}
trap cleanup EXIT
cleanup
rm -rf "$rootfs"

# what the roles need on a VM (scripts/roles/*.sh), and what Vagrant needs of a guest
BASE=(systemd-sysv udev kmod dbus ifupdown isc-dhcp-client openssh-server sudo rsync
  ca-certificates iproute2 iputils-ping ethtool procps less python3 python3-venv)
ROLES=(python3-bpfcc libbpf1 nftables python3-nftables tcpdump bpftool
  linux-headers-cloud-amd64 initramfs-tools zstd bird2)
# The kernel: Debian's cloud flavour (virtio, no hardware drivers: it boots under TCG too),
# from a suite new enough for steer's data plane: bookworm's own 6.1 verifier refuses it
# ("math between pkt pointer and register with unbounded min value" after a bswap; newer
# verifiers track byte swaps). bcc compiles against bookworm's headers, as scripts/setup.sh
# does on hosts whose kernel ships none.
kernel_suite=${STEER_BOX_KERNEL_SUITE:-trixie-backports}

say "debootstrap bookworm (minbase) into $rootfs"
mkdir -p "$out/debs"
debootstrap --variant=minbase --cache-dir="$out/debs" \
  --include="$(IFS=,; echo "${BASE[*]}")" bookworm "$rootfs" "$mirror" >"$out/debootstrap.log" 2>&1 ||
  { tail -20 "$out/debootstrap.log"; exit 1; }

for m in proc sys dev dev/pts; do mount --bind "/$m" "$rootfs/$m"; done
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
# no services start inside the chroot
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod +x "$rootfs/usr/sbin/policy-rc.d"
mkdir -p "$rootfs/var/cache/apt/archives"
cp "$out/debs/"*.deb "$rootfs/var/cache/apt/archives/" 2>/dev/null || true

say "apt: ${ROLES[*]}"
chroot "$rootfs" apt-get update -qq >"$out/apt.log" 2>&1
chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${ROLES[@]}" >>"$out/apt.log" 2>&1 ||
  { tail -30 "$out/apt.log"; exit 1; }
chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get dist-upgrade -y -q >>"$out/apt.log" 2>&1
cp -n "$rootfs/var/cache/apt/archives/"*.deb "$out/debs/" 2>/dev/null || true
chroot "$rootfs" apt-get clean

say "kernel: linux-image-cloud-amd64 from $kernel_suite"
echo "deb $mirror $kernel_suite main" >"$rootfs/etc/apt/sources.list.d/kernel.list"
chroot "$rootfs" apt-get update -qq >>"$out/apt.log" 2>&1
kpkgs=$(chroot "$rootfs" apt-cache depends -t "$kernel_suite" --recurse --no-recommends \
  --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances linux-image-cloud-amd64 |
  grep -E '^linux-(image|binary|modules|base)-[0-9].*-cloud-amd64$' | sort -u)
[[ -n $kpkgs ]] || { echo "build-box: no cloud kernel in $kernel_suite" >&2; exit 1; }
mkdir -p "$rootfs/tmp/kernel"
(cd "$rootfs/tmp/kernel" && chroot "$rootfs" /bin/sh -c "cd /tmp/kernel && apt-get download -t $kernel_suite $(echo $kpkgs)" >>"$out/apt.log" 2>&1) ||
  { tail -20 "$out/apt.log"; exit 1; }
for deb in "$rootfs"/tmp/kernel/*.deb; do dpkg -x "$deb" "$rootfs"; done
rm -rf "$rootfs/tmp/kernel" "$rootfs/etc/apt/sources.list.d/kernel.list"
chroot "$rootfs" apt-get update -qq >>"$out/apt.log" 2>&1
kver=$(ls "$rootfs/usr/lib/modules" | grep -- '-cloud-amd64$' | grep -v '^6\.1\.' | sort -V | tail -1)
hdr=$(cd "$rootfs" && ls -d usr/src/linux-headers-*-cloud-amd64 | sort -V | tail -1)
common=$(cd "$rootfs" && ls -d usr/src/linux-headers-*-common | sort -V | tail -1)
ln -sfn "/$hdr" "$rootfs/usr/lib/modules/$kver/build"
ln -sfn "/$common" "$rootfs/usr/lib/modules/$kver/source"
chroot "$rootfs" depmod "$kver"
cp "$rootfs/usr/lib/modules/$kver/config" "$rootfs/boot/config-$kver" # where mkinitramfs looks
chroot "$rootfs" mkinitramfs -o "/boot/initrd.img-$kver" "$kver" >>"$out/apt.log" 2>&1
cp "$rootfs/usr/lib/modules/$kver/vmlinuz" "$out/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$out/initrd.img"
echo "$kver" >"$out/kernel"

say "system: vagrant user, ssh, network (eth0 DHCP), console, fstab"
pubkey=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1)
[[ -n $pubkey ]] || pubkey=$(find / -xdev -path '*/vagrant*/keys/vagrant.pub' 2>/dev/null | head -1)
[[ -f $pubkey ]] || { echo "build-box: Vagrant's insecure public key not found" >&2; exit 1; }
chroot "$rootfs" /bin/bash -euo pipefail <<'EOF'
useradd -m -s /bin/bash -u 1000 vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
echo 'root:vagrant' | chpasswd
echo 'vagrant:vagrant' | chpasswd
systemctl enable serial-getty@ttyS0.service ssh.service networking.service >/dev/null 2>&1 || true
# BIRD: the package enables a system-wide bird.service; the relay VM runs steer's own
# (deploy/systemd/steer-bird@.service) and only the client VM, the upstream router, enables it
systemctl disable bird.service >/dev/null 2>&1 || true
# timers and checks a throwaway lab VM does not need (they cost seconds under TCG)
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
  fstrim.timer man-db.timer dpkg-db-backup.timer; do systemctl mask "$u" >/dev/null 2>&1 || true; done
EOF
install -m 600 -o 1000 -g 1000 "$pubkey" "$rootfs/home/vagrant/.ssh/authorized_keys"
echo "steer-lab" >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 steer-lab\n' >"$rootfs/etc/hosts"
printf '/dev/vda / ext4 defaults,noatime 0 1\nbpffs /sys/fs/bpf bpf defaults 0 0\n' >"$rootfs/etc/fstab"
cat >"$rootfs/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF
printf 'UseDNS no\nGSSAPIAuthentication no\n' >"$rootfs/etc/ssh/sshd_config.d/vagrant.conf"
# each VM makes its own machine id (and so its own DHCP identity) on first boot
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id" "$rootfs/usr/sbin/policy-rc.d"

say "steer's Python dependencies into /steer/.venv (requirements.lock, from PyPI)"
mkdir -p "$rootfs/steer"
rsync -a --exclude .venv/ --exclude .git/ --exclude vagrant/.box/ --exclude vagrant/.vagrant/ \
  --exclude vagrant/.lab/ --exclude build/ --exclude node_modules/ --exclude '.*_cache/' \
  "$root/" "$rootfs/steer/"
# pip in the chroot trusts what the host trusts (a proxy's CA, say), for this step only
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/tmp/host-ca.crt"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  PIP_CERT=/tmp/host-ca.crt PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  /bin/bash -euo pipefail <<'EOF' >"$out/pip.log" 2>&1 || { tail -30 "$out/pip.log"; exit 1; }
cd /steer
/usr/bin/python3 -m venv --system-site-packages .venv
.venv/bin/pip install -q --ignore-installed -r requirements.lock
.venv/bin/pip install -q --no-deps -e .
touch .venv/.steer-installed
.venv/bin/python -c 'import bcc, aiortc, pyroute2, pyctl.cli, transceiver.cli'
.venv/bin/pip cache purge >/dev/null 2>&1 || true
chown -R vagrant:vagrant /steer
EOF
rm -rf "$rootfs/root/.cache" "$rootfs/tmp/host-ca.crt"

say "kernel $kver (bcc headers: /$hdr)"
cleanup

say "disk: ext4 from the tree (mkfs.ext4 -d), qcow2"
size_g=8
rm -f "$out/box.raw" "$out/box.img"
mkfs.ext4 -q -F -L steer-root -d "$rootfs" "$out/box.raw" "${size_g}G"
qemu-img convert -O qcow2 "$out/box.raw" "$out/box.img"
rm -f "$out/box.raw"
rm -rf "$rootfs"

cat >"$out/metadata.json" <<EOF
{"provider": "libvirt", "format": "qcow2", "virtual_size": $size_g}
EOF
cp "$here/box.Vagrantfile" "$out/Vagrantfile"
say "packing and adding $box_name"
(cd "$out" && tar -cf steer-bookworm-lab.box metadata.json Vagrantfile box.img vmlinuz initrd.img)
vagrant box add --force --name "$box_name" "$out/steer-bookworm-lab.box" >"$out/box-add.log" 2>&1 ||
  { cat "$out/box-add.log"; exit 1; }
rm -f "$out/steer-bookworm-lab.box" "$out/box.img"
# libvirt keeps its own copy of an added box's image per pool: drop a stale one
for vol in $(virsh -q vol-list default 2>/dev/null | awk '{print $1}' | grep '^steer-VAGRANTSLASH-bookworm-lab_vagrant_box_image_'); do
  virsh -q vol-delete --pool default "$vol" >/dev/null 2>&1 || true
done
echo "$stamp" >"$out/stamp"
say "built and added $box_name in $(($(date +%s) - t0)) s"
