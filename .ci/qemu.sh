#!/usr/bin/env bash
# Fetches the guest for the QEMU vhost-user tests: Debian's current amd64 kernel (vmlinuz and the
# virtio-net modules) and busybox-static, extracted with dpkg-deb into a cache dir. Nothing is
# installed into this machine's /boot. Idempotent: a complete cache is reused.
#
#   apt-get download linux-image-<ver>-amd64 busybox-static ──dpkg-deb -x──► $VM_DIR/
#     vmlinuz  busybox  modules/<name>.ko  kernel-version
#
# Usage: bash .ci/qemu.sh   (prints the paths as KEY=value lines; VM_DIR overrides the cache dir)
# QEMU itself is not handled here: apt-get install --no-install-recommends qemu-system-x86
set -euo pipefail

VM_DIR="${VM_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/virtio-deno/vm}"
# The virtio-net driver stack, then the vhost-net kernel backend and the tap it drives, in load
# order, each after what its modinfo "depends=" names (Debian builds them as modules; AF_PACKET
# and IPv6 are built in: CONFIG_IPV6=y, so no ipv6.ko; tests/qemu.ts chooses per boot whether the
# kernel command line turns it off).
MODULES=(
  drivers/virtio/virtio_ring.ko
  drivers/virtio/virtio.ko
  drivers/virtio/virtio_pci_modern_dev.ko
  drivers/virtio/virtio_pci_legacy_dev.ko
  drivers/virtio/virtio_pci.ko
  net/core/failover.ko
  drivers/net/net_failover.ko
  drivers/net/virtio_net.ko
  drivers/vhost/vhost_iotlb.ko
  drivers/vhost/vhost.ko
  drivers/net/tun.ko
  drivers/net/tap.ko
  drivers/vhost/vhost_net.ko
)

complete() {
  [ -s "$VM_DIR/vmlinuz" ] && [ -x "$VM_DIR/busybox" ] && [ -s "$VM_DIR/kernel-version" ] &&
    [ -s "$VM_DIR/modules/order" ] || return 1
  local m expected=""
  for m in "${MODULES[@]}"; do
    [ -s "$VM_DIR/modules/$(basename "$m")" ] || return 1
    expected+="$(basename "$m")"$'\n'
  done
  [ "$(cat "$VM_DIR/modules/order")"$'\n' = "$expected" ] # a cache from an older list is redone
}

print_paths() {
  echo "VM_DIR=$VM_DIR"
  echo "KERNEL=$VM_DIR/vmlinuz"
  echo "KERNEL_VERSION=$(cat "$VM_DIR/kernel-version")"
  echo "BUSYBOX=$VM_DIR/busybox"
  echo "MODULES=$VM_DIR/modules"
}

if complete; then
  print_paths
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "qemu.sh: $tool not found; this script needs a Debian/Ubuntu host (apt, dpkg-deb)" >&2
    exit 1
  fi
done

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi

# The versioned kernel package the linux-image-amd64 metapackage points at.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}
pkg="$(kernel_package)"
if [ -z "$pkg" ]; then
  $sudo apt-get update -qq
  pkg="$(kernel_package)"
fi
if [ -z "$pkg" ]; then
  echo "qemu.sh: apt-cache knows no linux-image-amd64; is this a Debian amd64 host?" >&2
  exit 1
fi

mkdir -p "$(dirname "$VM_DIR")"
work="$(mktemp -d "$(dirname "$VM_DIR")/vm-download.XXXXXX")"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt's _apt user downloads into it
(cd "$work" && apt-get download -qq "$pkg" busybox-static)
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"

version="${pkg#linux-image-}"
stage="$work/vm"
mkdir -p "$stage/modules"
cp "$work/kernel/boot/vmlinuz-$version" "$stage/vmlinuz"
cp "$work/busybox/bin/busybox" "$stage/busybox"
: >"$stage/modules/order"
for m in "${MODULES[@]}"; do
  src="$work/kernel/lib/modules/$version/kernel/$m"
  if [ -f "$src" ]; then
    cp "$src" "$stage/modules/"
  elif [ -f "$src.xz" ]; then
    xz -dc "$src.xz" >"$stage/modules/$(basename "$m")"
  else
    echo "qemu.sh: $pkg has no $m (built into the kernel?); update MODULES" >&2
    exit 1
  fi
  basename "$m" >>"$stage/modules/order"
done
echo "$version" >"$stage/kernel-version"

# Swap in atomically so a concurrent or interrupted run never leaves a half-filled cache.
rm -rf "$VM_DIR"
mv "$stage" "$VM_DIR"
print_paths
