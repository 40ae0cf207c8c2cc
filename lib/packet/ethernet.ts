/**
 * Ethernet II headers (IEEE 802.3 §3.1.1, the EtherType field of IEEE 802 §9.2), read and
 * written in place.
 *
 * ```
 *   | destination MAC (6) | source MAC (6) | EtherType (2) | payload ...
 *   0                     6                12              14
 * ```
 *
 * @module
 */

import { read16, write16 } from "./checksum.ts";

/** Bytes of an Ethernet II header (no VLAN tag). */
export const ETHERNET_HEADER = 14;
/** Smallest Ethernet frame without its FCS (IEEE 802.3 §4.4.2: 64 bytes with FCS). */
export const ETHERNET_MIN_FRAME = 60;

/** EtherType values (IEEE registry) used by this library. */
export const EtherType = {
  /** Internet Protocol version 4. */
  IPV4: 0x0800,
  /** Address Resolution Protocol. */
  ARP: 0x0806,
  /** IEEE 802.1Q customer VLAN tag (C-TAG TPID). */
  VLAN: 0x8100,
  /** IEEE 802.1ad service VLAN tag (S-TAG TPID). */
  QINQ: 0x88a8,
  /** Internet Protocol version 6. */
  IPV6: 0x86dd,
} as const;

/**
 * Writes an Ethernet II header at `bytes[offset]`; returns the offset just past it.
 *
 * @example
 * ```ts
 * import { EtherType, parseMac, writeEthernet } from "./ethernet.ts";
 * const f = new Uint8Array(60);
 * const l3 = writeEthernet(f, 0, parseMac("ff:ff:ff:ff:ff:ff"), parseMac("02:00:00:00:00:01"),
 *   EtherType.IPV4);
 * console.assert(l3 === 14 && f[12] === 0x08);
 * ```
 */
export function writeEthernet(
  bytes: Uint8Array,
  offset: number,
  dst: Uint8Array,
  src: Uint8Array,
  etherType: number,
): number {
  bytes.set(dst, offset);
  bytes.set(src, offset + 6);
  write16(bytes, offset + 12, etherType);
  return offset + ETHERNET_HEADER;
}

/**
 * The EtherType (or TPID, when tagged) of the frame at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { etherType } from "./ethernet.ts";
 * const f = new Uint8Array(60);
 * f[12] = 0x86; f[13] = 0xdd;
 * console.assert(etherType(f, 0) === 0x86dd);
 * ```
 */
export function etherType(bytes: Uint8Array, offset: number): number {
  return read16(bytes, offset + 12);
}

/**
 * Swaps the destination and source MAC addresses of the frame at `bytes[offset]` in place.
 *
 * @example
 * ```ts
 * import { swapMacs } from "./ethernet.ts";
 * const f = new Uint8Array(14);
 * f[0] = 1; f[6] = 2;
 * swapMacs(f, 0);
 * console.assert(f[0] === 2 && f[6] === 1);
 * ```
 */
export function swapMacs(bytes: Uint8Array, offset: number): void {
  for (let k = 0; k < 6; k++) {
    const t = bytes[offset + k];
    bytes[offset + k] = bytes[offset + 6 + k];
    bytes[offset + 6 + k] = t;
  }
}

/**
 * Parses `aa:bb:cc:dd:ee:ff` (or `-` separated) into 6 bytes; throws a `TypeError` otherwise.
 *
 * @example
 * ```ts
 * import { parseMac } from "./ethernet.ts";
 * console.assert(parseMac("02:00:00:00:00:01")[5] === 1);
 * ```
 */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new TypeError(`bad MAC address "${text}" (expected aa:bb:cc:dd:ee:ff)`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/**
 * Formats the 6 bytes at `bytes[offset]` as `aa:bb:cc:dd:ee:ff`.
 *
 * @example
 * ```ts
 * import { formatMac } from "./ethernet.ts";
 * console.assert(formatMac(new Uint8Array([2, 0, 0, 0, 0, 1]), 0) === "02:00:00:00:00:01");
 * ```
 */
export function formatMac(bytes: Uint8Array, offset: number): string {
  const parts: string[] = [];
  for (let k = 0; k < 6; k++) parts.push(bytes[offset + k].toString(16).padStart(2, "0"));
  return parts.join(":");
}
