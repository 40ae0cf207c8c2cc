/**
 * TCP headers (RFC 9293 §3.1), 20 bytes without options; the checksum covers the pseudo-header,
 * the header and the data.
 *
 * ```
 *   | src port | dst port | sequence number | acknowledgment number |
 *   | data offset/flags | window | checksum | urgent pointer | data ...
 *   0          2          4                 8                       12  14  16  18  20
 * ```
 *
 * @module
 */

import { read16, write16, write32 } from "./checksum.ts";
import { upperLayerChecksum } from "./pseudo_header.ts";

/** Bytes of a TCP header without options. */
export const TCP_HEADER = 20;

/** TCP control bits (RFC 9293 §3.1). */
export const TcpFlag = {
  /** No more data from sender. */
  FIN: 0x01,
  /** Synchronize sequence numbers. */
  SYN: 0x02,
  /** Reset the connection. */
  RST: 0x04,
  /** Push function. */
  PSH: 0x08,
  /** Acknowledgment field is significant. */
  ACK: 0x10,
  /** Urgent pointer field is significant. */
  URG: 0x20,
} as const;

/** Field offsets inside a TCP header. */
export const TcpField = {
  /** Source port. */
  SRC_PORT: 0,
  /** Destination port. */
  DST_PORT: 2,
  /** Sequence number (32 bits). */
  SEQ: 4,
  /** Acknowledgment number (32 bits). */
  ACK: 8,
  /** Checksum. */
  CHECKSUM: 16,
} as const;

/**
 * Writes a 20-byte TCP header at `bytes[l4]` for `length` bytes of header + data (the data must
 * be in place) behind the IP header at `bytes[l3]`, checksum filled in; returns the data offset.
 *
 * @example
 * ```ts
 * import { tcpChecksumValid, TcpFlag, writeTcp } from "./tcp.ts";
 * import { writeIpv4 } from "./ipv4.ts";
 * const b = new Uint8Array(40);
 * writeIpv4(b, 0, 6, 40, 0xc6120001, 0xc6120002);
 * writeTcp(b, 0, 20, 1234, 80, 1, 0, TcpFlag.SYN, 65535, 20);
 * console.assert(tcpChecksumValid(b, 0, 20, 20));
 * ```
 */
export function writeTcp(
  bytes: Uint8Array,
  l3: number,
  l4: number,
  srcPort: number,
  dstPort: number,
  seq: number,
  ack: number,
  flags: number,
  window: number,
  length: number,
): number {
  write16(bytes, l4, srcPort);
  write16(bytes, l4 + 2, dstPort);
  write32(bytes, l4 + 4, seq);
  write32(bytes, l4 + 8, ack);
  bytes[l4 + 12] = (TCP_HEADER / 4) << 4; // data offset in 32-bit words
  bytes[l4 + 13] = flags;
  write16(bytes, l4 + 14, window);
  write16(bytes, l4 + 16, 0);
  write16(bytes, l4 + 18, 0);
  write16(bytes, l4 + 16, upperLayerChecksum(bytes, l3, l4, length));
  return l4 + TCP_HEADER;
}

/**
 * True when the checksum of the `length`-byte TCP segment at `bytes[l4]` verifies.
 *
 * @example
 * ```ts
 * import { tcpChecksumValid } from "./tcp.ts";
 * const b = new Uint8Array(40);
 * b[0] = 0x45; b[9] = 6;
 * console.assert(!tcpChecksumValid(b, 0, 20, 20));
 * ```
 */
export function tcpChecksumValid(
  bytes: Uint8Array,
  l3: number,
  l4: number,
  length: number,
): boolean {
  return upperLayerChecksum(bytes, l3, l4, length) === 0;
}

/**
 * Control bits of the TCP header at `bytes[l4]`.
 *
 * @example
 * ```ts
 * import { tcpFlags } from "./tcp.ts";
 * const h = new Uint8Array(20);
 * h[13] = 0x12;
 * console.assert(tcpFlags(h, 0) === 0x12);
 * ```
 */
export function tcpFlags(bytes: Uint8Array, l4: number): number {
  return bytes[l4 + 13] & 0x3f;
}

/**
 * Header length in bytes (data offset × 4) of the TCP header at `bytes[l4]`.
 *
 * @example
 * ```ts
 * import { tcpHeaderLength } from "./tcp.ts";
 * console.assert(tcpHeaderLength(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50]), 0) === 20);
 * ```
 */
export function tcpHeaderLength(bytes: Uint8Array, l4: number): number {
  return (read16(bytes, l4 + 12) >>> 12) << 2;
}
