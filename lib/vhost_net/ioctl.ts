/**
 * Request numbers and argument layouts of the vhost-net and tun/tap ioctls (Linux
 * `include/uapi/linux/vhost.h`, `vhost_types.h`, `if_tun.h`; x86-64). Encoders write into
 * caller-owned buffers: the control path allocates once per transport.
 *
 * ```
 *   /dev/vhost-net fd ──VHOST_*──► vhost worker (rings in this process's memory)
 *   /dev/net/tun fd   ──TUN*────► tap interface (the frames' other end)
 * ```
 *
 * @module
 */

import { ioc, IOC_READ, IOC_WRITE } from "../../ffi/ioctl.ts";

/** The vhost ioctl type (`VHOST_VIRTIO`, vhost.h). */
const VHOST_VIRTIO = 0xaf;
/** The tun ioctl type (`'T'`, if_tun.h). */
const TUN = 0x54;

/** Size of `struct vhost_vring_state` {index u32, num u32}. */
export const VRING_STATE_SIZE = 8;
/** Size of `struct vhost_vring_file` {index u32, fd i32}. */
export const VRING_FILE_SIZE = 8;
/** Size of `struct vhost_vring_addr` {index, flags u32; desc, used, avail, log u64}. */
export const VRING_ADDR_SIZE = 40;
/** Size of `struct vhost_memory` without regions {nregions u32, padding u32}. */
export const MEMORY_HEADER_SIZE = 8;
/** Size of one `struct vhost_memory_region` {guest_phys_addr, memory_size, userspace_addr, flags_padding}. */
export const MEMORY_REGION_SIZE = 32;
/** Size of the part of `struct ifreq` TUNSETIFF reads: name[16], flags u16 (padded to 40). */
export const IFREQ_SIZE = 40;
/** `IFNAMSIZ`: interface names are at most 15 bytes plus NUL. */
export const IFNAMSIZ = 16;

/** The vhost ioctls this transport uses (vhost.h). */
export const VhostIoctl = {
  VHOST_GET_FEATURES: ioc(IOC_READ, VHOST_VIRTIO, 0x00, 8),
  VHOST_SET_FEATURES: ioc(IOC_WRITE, VHOST_VIRTIO, 0x00, 8),
  VHOST_SET_OWNER: ioc(0, VHOST_VIRTIO, 0x01, 0),
  VHOST_RESET_OWNER: ioc(0, VHOST_VIRTIO, 0x02, 0),
  VHOST_SET_MEM_TABLE: ioc(IOC_WRITE, VHOST_VIRTIO, 0x03, MEMORY_HEADER_SIZE),
  VHOST_SET_VRING_NUM: ioc(IOC_WRITE, VHOST_VIRTIO, 0x10, VRING_STATE_SIZE),
  VHOST_SET_VRING_ADDR: ioc(IOC_WRITE, VHOST_VIRTIO, 0x11, VRING_ADDR_SIZE),
  VHOST_SET_VRING_BASE: ioc(IOC_WRITE, VHOST_VIRTIO, 0x12, VRING_STATE_SIZE),
  VHOST_GET_VRING_BASE: ioc(IOC_READ | IOC_WRITE, VHOST_VIRTIO, 0x12, VRING_STATE_SIZE),
  VHOST_SET_VRING_KICK: ioc(IOC_WRITE, VHOST_VIRTIO, 0x20, VRING_FILE_SIZE),
  VHOST_SET_VRING_CALL: ioc(IOC_WRITE, VHOST_VIRTIO, 0x21, VRING_FILE_SIZE),
  VHOST_NET_SET_BACKEND: ioc(IOC_WRITE, VHOST_VIRTIO, 0x30, VRING_FILE_SIZE),
} as const;

/** The tun/tap ioctls this transport uses (if_tun.h). */
export const TunIoctl = {
  TUNSETIFF: ioc(IOC_WRITE, TUN, 202, 4),
  TUNSETPERSIST: ioc(IOC_WRITE, TUN, 203, 4),
  TUNGETFEATURES: ioc(IOC_READ, TUN, 207, 4),
  TUNSETOFFLOAD: ioc(IOC_WRITE, TUN, 208, 4),
  TUNSETTXFILTER: ioc(IOC_WRITE, TUN, 209, 4),
  TUNGETIFF: ioc(IOC_READ, TUN, 210, 4),
  TUNSETSNDBUF: ioc(IOC_WRITE, TUN, 212, 4),
  TUNSETVNETHDRSZ: ioc(IOC_WRITE, TUN, 216, 4),
  TUNSETQUEUE: ioc(IOC_WRITE, TUN, 217, 4),
} as const;

/** `ifr_flags` of TUNSETIFF (if_tun.h). */
export const TunFlag = {
  IFF_TUN: 0x0001,
  IFF_TAP: 0x0002,
  IFF_NO_PI: 0x1000,
  IFF_VNET_HDR: 0x4000,
  IFF_MULTI_QUEUE: 0x0100,
  /** TUNSETQUEUE: put this fd's queue back into the tap's steering. */
  IFF_ATTACH_QUEUE: 0x0200,
  /** TUNSETQUEUE: take this fd's queue out of the tap's steering. */
  IFF_DETACH_QUEUE: 0x0400,
} as const;

/** `struct tun_filter` flags of TUNSETTXFILTER: pass every multicast frame (if_tun.h). */
export const TUN_FLT_ALLMULTI = 1;

/** TUNSETOFFLOAD flags (if_tun.h): the offloads the tap may leave to the reader of its frames. */
export const TunOffload = {
  TUN_F_CSUM: 0x01,
  TUN_F_TSO4: 0x02,
  TUN_F_TSO6: 0x04,
  TUN_F_TSO_ECN: 0x08,
} as const;

/** Bit 26, VHOST_F_LOG_ALL (vhost.h): dirty-page logging for live migration; never used here. */
export const VHOST_F_LOG_ALL = 1n << 26n;

/** Writes `struct vhost_vring_state` {index, num} at the start of `buf`; returns `buf`. */
export function vringState(buf: Uint8Array, index: number, num: number): Uint8Array {
  const v = new DataView(buf.buffer, buf.byteOffset, VRING_STATE_SIZE);
  v.setUint32(0, index, true);
  v.setUint32(4, num, true);
  return buf;
}

/** Writes `struct vhost_vring_file` {index, fd} (fd -1: detach / no fd); returns `buf`. */
export function vringFile(buf: Uint8Array, index: number, fd: number): Uint8Array {
  const v = new DataView(buf.buffer, buf.byteOffset, VRING_FILE_SIZE);
  v.setUint32(0, index, true);
  v.setInt32(4, fd, true);
  return buf;
}

/** Where one split vring lives, in process virtual addresses. */
export interface VringAddr {
  /** Vring index. */
  index: number;
  /** Descriptor table (16-byte aligned). */
  desc: number;
  /** Used ring, the device area (4-byte aligned). */
  used: number;
  /** Available ring, the driver area (2-byte aligned). */
  avail: number;
}

/**
 * Writes `struct vhost_vring_addr`: index, flags 0 (no used-ring logging), desc, then USED
 * before AVAIL (vhost.h field order), log 0; returns `buf`.
 */
export function vringAddr(buf: Uint8Array, a: VringAddr): Uint8Array {
  const v = new DataView(buf.buffer, buf.byteOffset, VRING_ADDR_SIZE);
  v.setUint32(0, a.index, true);
  v.setUint32(4, 0, true);
  v.setBigUint64(8, BigInt(a.desc), true);
  v.setBigUint64(16, BigInt(a.used), true);
  v.setBigUint64(24, BigInt(a.avail), true);
  v.setBigUint64(32, 0n, true);
  return buf;
}

/** One `struct vhost_memory_region`: process memory the vhost worker may read and write. */
export interface VhostMemoryRegion {
  /** Address the rings use for it (virtio-user: the process virtual address). */
  guestPhysAddr: number;
  /** Length in bytes. */
  size: number;
  /** Process virtual address. */
  userspaceAddr: number;
}

/**
 * Encodes `struct vhost_memory` with its regions (padding and flags_padding 0: the kernel answers
 * EOPNOTSUPP otherwise).
 *
 * @example
 * ```ts
 * import { vhostMemory } from "./ioctl.ts";
 * const m = vhostMemory([{ guestPhysAddr: 0x1000, size: 4096, userspaceAddr: 0x1000 }]);
 * console.log(m.length); // 40
 * ```
 */
export function vhostMemory(regions: readonly VhostMemoryRegion[]): Uint8Array {
  const buf = new Uint8Array(MEMORY_HEADER_SIZE + regions.length * MEMORY_REGION_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, regions.length, true);
  for (let i = 0; i < regions.length; i++) {
    const at = MEMORY_HEADER_SIZE + i * MEMORY_REGION_SIZE, r = regions[i];
    v.setBigUint64(at, BigInt(r.guestPhysAddr), true);
    v.setBigUint64(at + 8, BigInt(r.size), true);
    v.setBigUint64(at + 16, BigInt(r.userspaceAddr), true);
  }
  return buf;
}

/** Writes `struct ifreq` {ifr_name, ifr_flags} for TUNSETIFF; returns `buf` (IFREQ_SIZE bytes). */
export function ifreq(buf: Uint8Array, name: string, flags: number): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length >= IFNAMSIZ || bytes.includes(0)) {
    throw new RangeError(`interface name "${name}" must be 1..15 bytes without NUL (IFNAMSIZ)`);
  }
  buf.fill(0, 0, IFREQ_SIZE);
  buf.set(bytes);
  new DataView(buf.buffer, buf.byteOffset, IFREQ_SIZE).setUint16(IFNAMSIZ, flags, true);
  return buf;
}

/** The interface name in an `ifreq` the kernel filled in. */
export function ifreqName(buf: Uint8Array): string {
  const end = buf.subarray(0, IFNAMSIZ).indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? IFNAMSIZ : end));
}
