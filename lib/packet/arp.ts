/**
 * ARP over Ethernet for IPv4 (RFC 826): a 28-byte packet behind EtherType 0x0806.
 *
 * ```
 *   | htype 1 | ptype 0x0800 | hlen 6 | plen 4 | oper | sha (6) | spa (4) | tha (6) | tpa (4) |
 *   0         2              4        5        6      8         14        18        24        28
 * ```
 *
 * @module
 */

import { read16, read32, write16, write32 } from "./checksum.ts";

/** Bytes of an Ethernet/IPv4 ARP packet. */
export const ARP_PACKET = 28;

/** ARP operation codes (RFC 826). */
export const ArpOp = {
  /** Who has tpa? */
  REQUEST: 1,
  /** spa is at sha. */
  REPLY: 2,
} as const;

/**
 * Writes an Ethernet/IPv4 ARP packet at `bytes[offset]`; returns the offset just past it.
 *
 * @example
 * ```ts
 * import { ArpOp, arpOperation, writeArp } from "./arp.ts";
 * const b = new Uint8Array(28);
 * writeArp(b, 0, ArpOp.REQUEST, new Uint8Array(6), 0x0a000001, new Uint8Array(6), 0x0a000002);
 * console.assert(arpOperation(b, 0) === 1);
 * ```
 */
export function writeArp(
  bytes: Uint8Array,
  offset: number,
  operation: number,
  senderMac: Uint8Array,
  senderIp: number,
  targetMac: Uint8Array,
  targetIp: number,
): number {
  write16(bytes, offset, 1); // hardware type: Ethernet
  write16(bytes, offset + 2, 0x0800); // protocol type: IPv4
  bytes[offset + 4] = 6;
  bytes[offset + 5] = 4;
  write16(bytes, offset + 6, operation);
  bytes.set(senderMac, offset + 8);
  write32(bytes, offset + 14, senderIp);
  bytes.set(targetMac, offset + 18);
  write32(bytes, offset + 24, targetIp);
  return offset + ARP_PACKET;
}

/**
 * Operation of the ARP packet at `bytes[offset]`, or -1 when it is not Ethernet/IPv4 ARP.
 *
 * @example
 * ```ts
 * import { arpOperation } from "./arp.ts";
 * console.assert(arpOperation(new Uint8Array(28), 0) === -1);
 * ```
 */
export function arpOperation(bytes: Uint8Array, offset: number): number {
  if (read16(bytes, offset) !== 1 || read16(bytes, offset + 2) !== 0x0800) return -1;
  if (bytes[offset + 4] !== 6 || bytes[offset + 5] !== 4) return -1;
  return read16(bytes, offset + 6);
}

/**
 * Sender protocol (IPv4) address of the ARP packet at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { arpSenderIp, writeArp } from "./arp.ts";
 * const b = new Uint8Array(28);
 * writeArp(b, 0, 1, new Uint8Array(6), 0x0a000001, new Uint8Array(6), 0x0a000002);
 * console.assert(arpSenderIp(b, 0) === 0x0a000001);
 * ```
 */
export function arpSenderIp(bytes: Uint8Array, offset: number): number {
  return read32(bytes, offset + 14);
}

/**
 * Target protocol (IPv4) address of the ARP packet at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { arpTargetIp, writeArp } from "./arp.ts";
 * const b = new Uint8Array(28);
 * writeArp(b, 0, 1, new Uint8Array(6), 0x0a000001, new Uint8Array(6), 0x0a000002);
 * console.assert(arpTargetIp(b, 0) === 0x0a000002);
 * ```
 */
export function arpTargetIp(bytes: Uint8Array, offset: number): number {
  return read32(bytes, offset + 24);
}
