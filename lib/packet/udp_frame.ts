/**
 * Ethernet/IPv4/UDP frames for generators and tests, written in place into a buffer.
 *
 * ```
 *   | dst MAC | src MAC | 0x0800 | IPv4 (20 B) | UDP (8 B) | payload ... |
 *   0         6         12       14            34          42
 * ```
 *
 * @module
 */

/** Bytes of Ethernet + IPv4 + UDP headers. */
export const UDP_HEADERS = 42;

/** Smallest frame written (Ethernet minimum without FCS). */
export const MIN_FRAME = 60;

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
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, size);
  bytes.set(options.dstMac ?? [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], offset);
  bytes.set(options.srcMac ?? [0x02, 0, 0, 0, 0, 0x01], offset + 6);
  dv.setUint16(12, 0x0800); // EtherType IPv4
  const ipLen = size - 14;
  dv.setUint8(14, 0x45); // version 4, IHL 5
  dv.setUint8(15, 0);
  dv.setUint16(16, ipLen);
  dv.setUint16(18, 0); // identification
  dv.setUint16(20, 0x4000); // don't fragment
  dv.setUint8(22, 64); // TTL
  dv.setUint8(23, 17); // UDP
  dv.setUint16(24, 0);
  dv.setUint32(26, options.srcIp ?? 0xc6120001);
  dv.setUint32(30, options.dstIp ?? 0xc6120002);
  dv.setUint16(24, ipv4Checksum(bytes, offset + 14));
  dv.setUint16(34, options.srcPort ?? 9);
  dv.setUint16(36, options.dstPort ?? 9);
  dv.setUint16(38, ipLen - 20);
  dv.setUint16(40, 0);
  for (let i = UDP_HEADERS; i < size; i++) bytes[offset + i] = (i - UDP_HEADERS) & 0xff;
  return size;
}

/**
 * The RFC 791 header checksum of the 20-byte IPv4 header at `bytes[offset]`.
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
  let sum = 0;
  for (let i = 0; i < 20; i += 2) {
    if (i === 10) continue; // the checksum field itself
    sum += (bytes[offset + i] << 8) | bytes[offset + i + 1];
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Parses a dotted IPv4 address into a 32-bit number.
 *
 * @example
 * ```ts
 * import { parseIpv4 } from "./udp_frame.ts";
 * console.assert(parseIpv4("198.18.0.1") === 0xc6120001);
 * ```
 */
export function parseIpv4(text: string): number {
  const parts = text.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new TypeError(`bad IPv4 address "${text}"`);
  }
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}
