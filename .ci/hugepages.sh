#!/usr/bin/env bash
# Reserves 2 MB hugepages for dpdk-testpmd peers, mounts hugetlbfs, and removes stale DPDK files
# left by killed test runs (file prefixes "vdeno-<pid>-..." whose pid is gone).
# Usage: bash .ci/hugepages.sh [PAGES]   (default 1024 = 2 GB; needs root or passwordless sudo)
set -euo pipefail

pages="${1:-${HUGEPAGES:-1024}}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "hugepages.sh: not root and no passwordless sudo; cannot reserve hugepages" >&2
    exit 1
  fi
fi

nr_file=/proc/sys/vm/nr_hugepages
current="$(cat "$nr_file")"
if [ "$current" -lt "$pages" ]; then
  echo "$pages" | $sudo tee "$nr_file" >/dev/null
  if [ "$(cat "$nr_file")" -lt "$pages" ]; then
    # Fragmented memory: compact, drop caches, try again.
    echo 1 | $sudo tee /proc/sys/vm/compact_memory >/dev/null || true
    echo 3 | $sudo tee /proc/sys/vm/drop_caches >/dev/null || true
    echo "$pages" | $sudo tee "$nr_file" >/dev/null
  fi
  got="$(cat "$nr_file")"
  if [ "$got" -lt "$pages" ]; then
    echo "hugepages.sh: wanted $pages hugepages, kernel gave $got" >&2
  fi
fi

if ! awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
  $sudo mkdir -p /dev/hugepages
  $sudo mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages
fi

# Stale files of our prefixes: hugepage maps in every hugetlbfs mount and DPDK runtime dirs.
owner_alive() { # $1 = file or dir name starting with vdeno-<pid>-
  local pid="${1#vdeno-}"
  pid="${pid%%-*}"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ]
}
removed=0
while read -r mnt; do
  for f in "$mnt"/vdeno-*map_*; do
    [ -e "$f" ] || continue
    if ! owner_alive "$(basename "$f")"; then
      $sudo rm -f "$f"
      removed=$((removed + 1))
    fi
  done
done < <(awk '$3 == "hugetlbfs" { print $2 }' /proc/mounts)
for d in /var/run/dpdk/vdeno-* "${XDG_RUNTIME_DIR:-/tmp}"/dpdk/vdeno-*; do
  [ -e "$d" ] || continue
  if ! owner_alive "$(basename "$d")"; then
    $sudo rm -rf "$d"
    removed=$((removed + 1))
  fi
done
[ "$removed" -eq 0 ] || echo "hugepages.sh: removed $removed stale DPDK files"

grep -E '^HugePages_(Total|Free)' /proc/meminfo | tr -s ' ' | paste -sd ' ' -
