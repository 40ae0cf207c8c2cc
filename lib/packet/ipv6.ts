/**
 * IPv6 headers (RFC 8200 §3), 40 bytes, read and written in place; the upper-layer
 * pseudo-header of RFC 8200 §8.1 for UDP, TCP and ICMPv6 checksums.
 *
 * ```
 *   | ver/class/flow label (4) | payload length (2) | next header | hop limit |
 *   | source address (16) | destination address (16) |
 *   0                          4                    6             7           8   24   40
 * ```
 *
 * @module
 */

import { onesSum, read16, write16, write32 } from "./checksum.ts";

/** Bytes of an IPv6 header. */
export const IPV6_HEADER = 40;

/** Field offsets inside an IPv6 header. */
export const Ipv6Field = {
  /** Payload length (16 bits). */
  PAYLOAD_LENGTH: 4,
  /** Next header (8 bits). */
  NEXT_HEADER: 6,
  /** Hop limit (8 bits). */
  HOP_LIMIT: 7,
  /** Source address (128 bits). */
  SRC: 8,
  /** Destination address (128 bits). */
  DST: 24,
} as const;

/**
 * Writes a 40-byte IPv6 header at `bytes[offset]`; returns the offset of its payload.
 * `payloadLength` counts what follows the header (RFC 8200 §3).
 *
 * @example
 * ```ts
 * import { parseIpv6, writeIpv6 } from "./ipv6.ts";
 * const b = new Uint8Array(48);
 * const l4 = writeIpv6(b, 0, 17, 8, parseIpv6("2001:db8::1"), parseIpv6("2001:db8::2"));
 * console.assert(l4 === 40 && b[0] >> 4 === 6);
 * ```
 */
export function writeIpv6(
  bytes: Uint8Array,
  offset: number,
  nextHeader: number,
  payloadLength: number,
  src: Uint8Array,
  dst: Uint8Array,
  hopLimit = 64,
): number {
  write32(bytes, offset, 0x60000000); // version 6, traffic class 0, flow label 0
  write16(bytes, offset + 4, payloadLength);
  bytes[offset + 6] = nextHeader;
  bytes[offset + 7] = hopLimit;
  bytes.set(src, offset + 8);
  bytes.set(dst, offset + 24);
  return offset + IPV6_HEADER;
}

/**
 * Payload length field of the IPv6 header at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { ipv6PayloadLength, writeIpv6 } from "./ipv6.ts";
 * const b = new Uint8Array(40);
 * writeIpv6(b, 0, 17, 8, new Uint8Array(16), new Uint8Array(16));
 * console.assert(ipv6PayloadLength(b, 0) === 8);
 * ```
 */
export function ipv6PayloadLength(bytes: Uint8Array, offset: number): number {
  return read16(bytes, offset + 4);
}

/**
 * The unfolded one's complement sum of the RFC 8200 §8.1 pseudo-header (source, destination,
 * upper-layer length, next header) for the IPv6 header at `bytes[offset]`.
 *
 * @example
 * ```ts
 * import { ipv6PseudoSum, writeIpv6 } from "./ipv6.ts";
 * const b = new Uint8Array(40);
 * writeIpv6(b, 0, 17, 8, new Uint8Array(16), new Uint8Array(16));
 * console.assert(ipv6PseudoSum(b, 0, 8) === 17 + 8);
 * ```
 */
export function ipv6PseudoSum(bytes: Uint8Array, offset: number, upperLength: number): number {
  return onesSum(
    bytes,
    offset + 8,
    32,
    bytes[offset + 6] + (upperLength >>> 16) +
      (upperLength & 0xffff),
  );
}

/**
 * Parses an IPv6 address in RFC 4291 §2.2 text form (`::` compression, no embedded IPv4) into
 * 16 bytes; throws a `TypeError` otherwise.
 *
 * @example
 * ```ts
 * import { parseIpv6 } from "./ipv6.ts";
 * const a = parseIpv6("2001:db8::1");
 * console.assert(a[0] === 0x20 && a[15] === 1);
 * ```
 */
export function parseIpv6(text: string): Uint8Array {
  const bad = () => new TypeError(`bad IPv6 address "${text}"`);
  const halves = text.split("::");
  if (halves.length > 2) throw bad();
  const words = (s: string) => (s === "" ? [] : s.split(":"));
  const head = words(halves[0]);
  const tail = halves.length === 2 ? words(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 1 && fill !== 0) || (halves.length === 2 && fill < 1)) throw bad();
  const all = [...head, ...Array(halves.length === 2 ? fill : 0).fill("0"), ...tail];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) throw bad();
    write16(out, i * 2, parseInt(w, 16));
  });
  return out;
}

/**
 * Formats the 16 bytes at `bytes[offset]` as an IPv6 address (RFC 5952: lower case, the
 * longest run of two or more zero words compressed).
 *
 * @example
 * ```ts
 * import { formatIpv6, parseIpv6 } from "./ipv6.ts";
 * console.assert(formatIpv6(parseIpv6("2001:0db8:0:0:0:0:0:1"), 0) === "2001:db8::1");
 * ```
 */
export function formatIpv6(bytes: Uint8Array, offset: number): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(read16(bytes, offset + 2 * i));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}
