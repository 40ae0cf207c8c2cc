/**
 * Ethernet/IPv4/UDP frames for generators and tests, written in place into a buffer.
 *
 * ```
 *   | dst MAC | src MAC | 0x0800 | IPv4 (20 B) | UDP (8 B) | payload ... |
 *   0         6         12       14            34          42
 * ```
 *
 * For frames patched per packet (flows, sizes, checksums kept valid) see `template.ts`.
 *
 * @module
 */

import { internetChecksum, write16 } from "./checksum.ts";
import { ETHERNET_MIN_FRAME, EtherType, writeEthernet } from "./ethernet.ts";
import { IpProtocol, writeIpv4 } from "./ipv4.ts";

export { parseIpv4 } from "./ipv4.ts";

/** Bytes of Ethernet + IPv4 + UDP headers. */
export const UDP_HEADERS = 42;

/** Smallest frame written (Ethernet minimum without FCS). */
export const MIN_FRAME = ETHERNET_MIN_FRAME;

const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const DEFAULT_SRC = new Uint8Array([0x02, 0, 0, 0, 0, 0x01]);

/** Addresses and ports of a generated UDP frame. */
export interface UdpFrameOptions {
  /** Destination MAC (default broadcast). */
  dstMac?: Uint8Array;
  /** Source MAC (default 02:00:00:00:00:01). */
  srcMac?: Uint8Array;
  /** Source IPv4 address as a 32-bit number (default 198.18.0.1, RFC 2544 range). */
  srcIp?: number;
  /** Destination IPv4 address (default 198.18.0.2). */
  dstIp?: number;
  /** UDP source port (default 9). */
  srcPort?: number;
  /** UDP destination port (default 9, discard). */
  dstPort?: number;
}

/**
 * Writes a `size`-byte UDP/IPv4 frame at `bytes[offset]` (payload bytes count up from 0) and
 * returns `size`. The IPv4 checksum is filled in; the UDP checksum is 0 (allowed for IPv4).
 *
 * @example
 * ```ts
 * import { writeUdpFrame } from "./udp_frame.ts";
 * const frame = new Uint8Array(64);
 * writeUdpFrame(frame, 0, 64);
 * console.assert(frame[23] === 17); // IPv4 protocol: UDP
 * ```
 */
export function writeUdpFrame(
  bytes: Uint8Array,
  offset: number,
  size: number,
  options: UdpFrameOptions = {},
): number {
  if (size < MIN_FRAME) throw new RangeError(`frame size ${size} is below ${MIN_FRAME}`);
  writeEthernet(
    bytes,
    offset,
    options.dstMac ?? BROADCAST,
    options.srcMac ?? DEFAULT_SRC,
    EtherType.IPV4,
  );
  const ipLen = size - 14;
  const l4 = writeIpv4(
    bytes,
    offset + 14,
    IpProtocol.UDP,
    ipLen,
    options.srcIp ?? 0xc6120001,
    options.dstIp ?? 0xc6120002,
  );
  write16(bytes, l4, options.srcPort ?? 9);
  write16(bytes, l4 + 2, options.dstPort ?? 9);
  write16(bytes, l4 + 4, ipLen - 20);
  write16(bytes, l4 + 6, 0); // no checksum (RFC 768, IPv4 only)
  for (let i = UDP_HEADERS; i < size; i++) bytes[offset + i] = (i - UDP_HEADERS) & 0xff;
  return size;
}

/**
 * The RFC 791 header checksum of the 20-byte IPv4 header at `bytes[offset]` (its checksum field
 * taken as zero).
 *
 * @example
 * ```ts
 * import { ipv4Checksum } from "./udp_frame.ts";
 * const hdr = new Uint8Array(20);
 * hdr[0] = 0x45;
 * console.assert(ipv4Checksum(hdr, 0) === 0xbaff);
 * ```
 */
export function ipv4Checksum(bytes: Uint8Array, offset: number): number {
  const stored = (bytes[offset + 10] << 8) | bytes[offset + 11];
  // Summing the stored checksum too and then adding its complement back leaves it out.
  return internetChecksum(bytes, offset, 20, ~stored & 0xffff);
}
