/**
 * ICMP echo (RFC 792, type 8 request / 0 reply) and ICMPv6 echo (RFC 4443 §4.1-4.2, type 128 /
 * 129). The ICMP checksum covers the message only; the ICMPv6 one also the pseudo-header.
 *
 * ```
 *   | type | code | checksum | identifier | sequence number | data ...
 *   0      1      2          4            6                 8
 * ```
 *
 * @module
 */

import { internetChecksum, read16, updateChecksum16, write16 } from "./checksum.ts";
import { upperLayerChecksum } from "./pseudo_header.ts";

/** Bytes of an echo header. */
export const ICMP_ECHO_HEADER = 8;

/** ICMP and ICMPv6 message types: echo, and IPv6 neighbor discovery. */
export const IcmpType = {
  /** ICMP echo reply (RFC 792). */
  ECHO_REPLY: 0,
  /** ICMP echo request (RFC 792). */
  ECHO_REQUEST: 8,
  /** ICMPv6 echo request (RFC 4443 §4.1). */
  V6_ECHO_REQUEST: 128,
  /** ICMPv6 echo reply (RFC 4443 §4.2). */
  V6_ECHO_REPLY: 129,
  /** Neighbor solicitation (RFC 4861 §4.3). */
  NEIGHBOR_SOLICITATION: 135,
  /** Neighbor advertisement (RFC 4861 §4.4). */
  NEIGHBOR_ADVERTISEMENT: 136,
} as const;

/**
 * Writes an ICMP or ICMPv6 echo header at `bytes[l4]` for a `length`-byte message (data in
 * place) behind the IP header at `bytes[l3]`, checksum filled in (pseudo-header for IPv6);
 * returns the data offset.
 *
 * @example
 * ```ts
 * import { icmpChecksumValid, IcmpType, writeIcmpEcho } from "./icmp.ts";
 * import { writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(28);
 * writeIpv4(b, 0, 1, 28, 0x0a000001, 0x0a000002);
 * writeIcmpEcho(b, 0, 20, IcmpType.ECHO_REQUEST, 0x1234, 1, 8);
 * console.assert(icmpChecksumValid(b, 0, 20, 8));
 * ```
 */
export function writeIcmpEcho(
  bytes: Uint8Array,
  l3: number,
  l4: number,
  type: number,
  identifier: number,
  sequence: number,
  length: number,
): number {
  bytes[l4] = type;
  bytes[l4 + 1] = 0;
  write16(bytes, l4 + 2, 0);
  write16(bytes, l4 + 4, identifier);
  write16(bytes, l4 + 6, sequence);
  write16(bytes, l4 + 2, icmpChecksum(bytes, l3, l4, length));
  return l4 + ICMP_ECHO_HEADER;
}

/**
 * True when the checksum of the `length`-byte ICMP / ICMPv6 message at `bytes[l4]` verifies.
 *
 * @example
 * ```ts
 * import { icmpChecksumValid } from "./icmp.ts";
 * const b = new Uint8Array(28);
 * b[0] = 0x45; b[20] = 8;
 * console.assert(!icmpChecksumValid(b, 0, 20, 8));
 * ```
 */
export function icmpChecksumValid(
  bytes: Uint8Array,
  l3: number,
  l4: number,
  length: number,
): boolean {
  return icmpChecksum(bytes, l3, l4, length) === 0;
}

/**
 * Turns the echo request at `bytes[l4]` into a reply in place (type and checksum only; the
 * caller swaps addresses), updating the checksum for the one changed word.
 *
 * @example
 * ```ts
 * import { icmpChecksumValid, IcmpType, toEchoReply, writeIcmpEcho } from "./icmp.ts";
 * import { writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(28);
 * writeIpv4(b, 0, 1, 28, 1, 2);
 * writeIcmpEcho(b, 0, 20, IcmpType.ECHO_REQUEST, 1, 1, 8);
 * toEchoReply(b, 20);
 * console.assert(b[20] === 0 && icmpChecksumValid(b, 0, 20, 8));
 * ```
 */
export function toEchoReply(bytes: Uint8Array, l4: number): void {
  const oldWord = read16(bytes, l4);
  const type = bytes[l4] === IcmpType.V6_ECHO_REQUEST
    ? IcmpType.V6_ECHO_REPLY
    : IcmpType.ECHO_REPLY;
  bytes[l4] = type;
  write16(bytes, l4 + 2, updateChecksum16(read16(bytes, l4 + 2), oldWord, read16(bytes, l4)));
}

function icmpChecksum(bytes: Uint8Array, l3: number, l4: number, length: number): number {
  return bytes[l3] >> 4 === 6
    ? upperLayerChecksum(bytes, l3, l4, length)
    : internetChecksum(bytes, l4, length);
}
