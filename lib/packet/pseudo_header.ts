/**
 * Upper-layer checksums over an IP pseudo-header: UDP (RFC 768), TCP (RFC 9293 §3.1) and ICMPv6
 * (RFC 4443 §2.3) all sum a pseudo-header of the IPv4 (RFC 768) or IPv6 (RFC 8200 §8.1) header
 * in front of their own bytes. The IP version is read from the header at `l3`.
 *
 * ```
 *   pseudo-header(src, dst, protocol, length) + L4 header + payload ──► 16-bit checksum
 * ```
 *
 * @module
 */

import { internetChecksum } from "./checksum.ts";
import { ipv4PseudoSum } from "./ipv4.ts";
import { ipv6PseudoSum } from "./ipv6.ts";

/**
 * The checksum of the `length` upper-layer bytes at `bytes[l4]` behind the IP header at
 * `bytes[l3]`, pseudo-header included. With the checksum field zeroed this is the value to
 * store; over a region holding its checksum it is 0 when the checksum verifies.
 *
 * @example
 * ```ts
 * import { upperLayerChecksum } from "./pseudo_header.ts";
 * import { writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(28);
 * writeIpv4(b, 0, 17, 28, 0xc6120001, 0xc6120002);
 * b[25] = 8; // UDP length
 * const sum = upperLayerChecksum(b, 0, 20, 8);
 * console.assert(sum > 0);
 * ```
 */
export function upperLayerChecksum(
  bytes: Uint8Array,
  l3: number,
  l4: number,
  length: number,
): number {
  const pseudo = bytes[l3] >> 4 === 6
    ? ipv6PseudoSum(bytes, l3, length)
    : ipv4PseudoSum(bytes, l3, length);
  return internetChecksum(bytes, l4, length, pseudo);
}
