/**
 * IPv4 headers (RFC 791 §3.1), 20 bytes without options, read and written in place; the header
 * checksum (RFC 791 §3.1, RFC 1071) is filled in when writing and checked when parsing.
 *
 * ```
 *   0      1      2      3
 *   | ver/IHL | TOS | total length |  identification | flags/fragment |
 *   | TTL | protocol | header checksum | source address | destination address |
 *   0       8        10                12               16                    20
 * ```
 *
 * @module
 */

import { internetChecksum, onesSum, read16, read32, write16, write32 } from "./checksum.ts";

/** Bytes of an IPv4 header without options. */
export const IPV4_HEADER = 20;

/** IP protocol numbers (IANA) used by this library. */
export const IpProtocol = {
  /** ICMP (RFC 792). */
  ICMP: 1,
  /** TCP (RFC 9293). */
  TCP: 6,
  /** UDP (RFC 768). */
  UDP: 17,
  /** ICMPv6 (RFC 4443). */
  ICMPV6: 58,
} as const;

/** Field offsets inside an IPv4 header. */
export const Ipv4Field = {
  /** Total length (16 bits). */
  TOTAL_LENGTH: 2,
  /** Identification (16 bits). */
  IDENTIFICATION: 4,
  /** Time to live (8 bits). */
  TTL: 8,
  /** Protocol (8 bits). */
  PROTOCOL: 9,
  /** Header checksum (16 bits). */
  CHECKSUM: 10,
  /** Source address (32 bits). */
  SRC: 12,
  /** Destination address (32 bits). */
  DST: 16,
} as const;

/**
 * Writes a 20-byte IPv4 header at `bytes[offset]` (DF set, checksum filled in); returns the
 * offset of its payload. `totalLength` counts this header and the payload (RFC 791 §3.1).
 *
 * @example
 * ```ts
 * import { ipv4HeaderValid, writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(28);
 * writeIpv4(b, 0, 17, 28, 0xc6120001, 0xc6120002);
 * console.assert(ipv4HeaderValid(b, 0));
 * ```
 */
export function writeIpv4(
  bytes: Uint8Array,
  offset: number,
  protocol: number,
  totalLength: number,
  src: number,
  dst: number,
  ttl = 64,
  identification = 0,
): number {
  bytes[offset] = 0x45; // version 4, IHL 5 words
  bytes[offset + 1] = 0; // DSCP/ECN
  write16(bytes, offset + 2, totalLength);
  write16(bytes, offset + 4, identification);
  write16(bytes, offset + 6, 0x4000); // flags: don't fragment
  bytes[offset + 8] = ttl;
  bytes[offset + 9] = protocol;
  write16(bytes, offset + 10, 0);
  write32(bytes, offset + 12, src);
  write32(bytes, offset + 16, dst);
  write16(bytes, offset + 10, internetChecksum(bytes, offset, IPV4_HEADER));
  return offset + IPV4_HEADER;
}

/**
 * Header length in bytes (IHL × 4) of the IPv4 header at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { ipv4HeaderLength } from "./ipv4.ts";
 * console.assert(ipv4HeaderLength(new Uint8Array([0x45]), 0) === 20);
 * ```
 */
export function ipv4HeaderLength(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] & 0x0f) << 2;
}

/**
 * True when the IPv4 header at `bytes[offset]` is version 4, IHL ≥ 5 and its checksum verifies
 * (the sum over the header, checksum included, is 0xffff: RFC 1071 §1).
 *
 * @example
 * ```ts
 * import { ipv4HeaderValid } from "./ipv4.ts";
 * console.assert(!ipv4HeaderValid(new Uint8Array(20), 0));
 * ```
 */
export function ipv4HeaderValid(bytes: Uint8Array, offset: number): boolean {
  const ihl = ipv4HeaderLength(bytes, offset);
  if (bytes[offset] >> 4 !== 4 || ihl < IPV4_HEADER) return false;
  return internetChecksum(bytes, offset, ihl) === 0;
}

/**
 * Source address of the IPv4 header at `bytes[offset]`, as a 32-bit number.
 *
 * @example
 * ```ts
 * import { ipv4Src, writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(20);
 * writeIpv4(b, 0, 17, 20, 0x0a000001, 0x0a000002);
 * console.assert(ipv4Src(b, 0) === 0x0a000001);
 * ```
 */
export function ipv4Src(bytes: Uint8Array, offset: number): number {
  return read32(bytes, offset + 12);
}

/**
 * Destination address of the IPv4 header at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { ipv4Dst, writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(20);
 * writeIpv4(b, 0, 17, 20, 0x0a000001, 0x0a000002);
 * console.assert(ipv4Dst(b, 0) === 0x0a000002);
 * ```
 */
export function ipv4Dst(bytes: Uint8Array, offset: number): number {
  return read32(bytes, offset + 16);
}

/**
 * Total length field of the IPv4 header at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { ipv4TotalLength, writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(20);
 * writeIpv4(b, 0, 17, 46, 1, 2);
 * console.assert(ipv4TotalLength(b, 0) === 46);
 * ```
 */
export function ipv4TotalLength(bytes: Uint8Array, offset: number): number {
  return read16(bytes, offset + 2);
}

/**
 * The unfolded one's complement sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1: source,
 * destination, zero + protocol, upper-layer length) for the header at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { ipv4PseudoSum, writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(20);
 * writeIpv4(b, 0, 17, 28, 0, 0);
 * console.assert(ipv4PseudoSum(b, 0, 8) === 17 + 8);
 * ```
 */
export function ipv4PseudoSum(bytes: Uint8Array, offset: number, upperLength: number): number {
  return onesSum(bytes, offset + 12, 8, bytes[offset + 9] + upperLength);
}

/**
 * Parses a dotted IPv4 address into a 32-bit number; throws a `TypeError` otherwise.
 *
 * @example
 * ```ts
 * import { parseIpv4 } from "./ipv4.ts";
 * console.assert(parseIpv4("198.18.0.1") === 0xc6120001);
 * ```
 */
export function parseIpv4(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new TypeError(`bad IPv4 address "${text}": expected four numbers 0..255 like 10.0.0.2`);
  }
  return parts.reduce((a, p) => a * 256 + Number(p), 0);
}

/**
 * Formats a 32-bit IPv4 address as dotted decimal.
 *
 * @example
 * ```ts
 * import { formatIpv4 } from "./ipv4.ts";
 * console.assert(formatIpv4(0xc6120001) === "198.18.0.1");
 * ```
 */
export function formatIpv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}
