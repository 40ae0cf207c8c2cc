/**
 * UDP headers (RFC 768), 8 bytes, over IPv4 or IPv6. The checksum covers a pseudo-header, the
 * header and the payload; a computed 0 is sent as 0xffff, and 0 on the wire means "none" (IPv4
 * only: RFC 768, RFC 8200 §8.1 makes it mandatory over IPv6).
 *
 * ```
 *   | source port | destination port | length | checksum | payload ...
 *   0             2                  4        6          8
 * ```
 *
 * @module
 */

import { read16, write16 } from "./checksum.ts";
import { upperLayerChecksum } from "./pseudo_header.ts";

/** Bytes of a UDP header. */
export const UDP_HEADER = 8;

/** Field offsets inside a UDP header. */
export const UdpField = {
  /** Source port. */
  SRC_PORT: 0,
  /** Destination port. */
  DST_PORT: 2,
  /** Length of header + payload. */
  LENGTH: 4,
  /** Checksum. */
  CHECKSUM: 6,
} as const;

/**
 * Writes a UDP header at `bytes[l4]` for `length` bytes of header + payload (the payload must be
 * in place) behind the IP header at `bytes[l3]`, checksum filled in; returns the payload offset.
 *
 * @example
 * ```ts
 * import { udpChecksumValid, writeUdp } from "./udp.ts";
 * import { writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(28);
 * writeIpv4(b, 0, 17, 28, 0xc6120001, 0xc6120002);
 * writeUdp(b, 0, 20, 1234, 9, 8);
 * console.assert(udpChecksumValid(b, 0, 20));
 * ```
 */
export function writeUdp(
  bytes: Uint8Array,
  l3: number,
  l4: number,
  srcPort: number,
  dstPort: number,
  length: number,
): number {
  write16(bytes, l4, srcPort);
  write16(bytes, l4 + 2, dstPort);
  write16(bytes, l4 + 4, length);
  write16(bytes, l4 + 6, 0);
  const sum = upperLayerChecksum(bytes, l3, l4, length);
  write16(bytes, l4 + 6, sum === 0 ? 0xffff : sum);
  return l4 + UDP_HEADER;
}

/**
 * True when the UDP checksum of the datagram at `bytes[l4]` (length from its header) verifies,
 * or is 0 (none) over IPv4.
 *
 * @example
 * ```ts
 * import { udpChecksumValid } from "./udp.ts";
 * const b = new Uint8Array(28);
 * b[0] = 0x45; b[25] = 8;
 * console.assert(udpChecksumValid(b, 0, 20)); // checksum 0 over IPv4: not used
 * ```
 */
export function udpChecksumValid(bytes: Uint8Array, l3: number, l4: number): boolean {
  const check = read16(bytes, l4 + 6);
  if (check === 0) return bytes[l3] >> 4 === 4;
  return upperLayerChecksum(bytes, l3, l4, read16(bytes, l4 + 4)) === 0;
}

/**
 * Source port of the UDP (or TCP) header at `bytes[l4]`.
 *
 * @example
 * ```ts
 * import { srcPort } from "./udp.ts";
 * console.assert(srcPort(new Uint8Array([0x04, 0xd2, 0, 9]), 0) === 1234);
 * ```
 */
export function srcPort(bytes: Uint8Array, l4: number): number {
  return read16(bytes, l4);
}

/**
 * Destination port of the UDP (or TCP) header at `bytes[l4]`.
 *
 * @example
 * ```ts
 * import { dstPort } from "./udp.ts";
 * console.assert(dstPort(new Uint8Array([0x04, 0xd2, 0, 9]), 0) === 9);
 * ```
 */
export function dstPort(bytes: Uint8Array, l4: number): number {
  return read16(bytes, l4 + 2);
}
