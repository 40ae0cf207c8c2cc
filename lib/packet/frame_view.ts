/**
 * Parsing a received frame without an object per packet: {@linkcode parseFrame} fills a
 * preallocated `Int32Array` with the offsets and values of its layers (Ethernet, 802.1Q tags,
 * IPv4/IPv6, UDP/TCP/ICMP) and returns flags saying what it found and which checksums verified.
 *
 * ```
 *   bytes[offset .. offset+length) ──parseFrame──► view[VIEW_L3] / [VIEW_L4] / [VIEW_PAYLOAD] ...
 *                                              └─► FrameFlag bits (IPV4 | UDP | L4_CHECKSUM_OK ...)
 * ```
 *
 * @module
 */

import { read16 } from "./checksum.ts";
import { EtherType } from "./ethernet.ts";
import { icmpChecksumValid } from "./icmp.ts";
import { IpProtocol, ipv4HeaderLength, ipv4HeaderValid } from "./ipv4.ts";
import { IPV6_HEADER } from "./ipv6.ts";
import { tcpChecksumValid, tcpHeaderLength } from "./tcp.ts";
import { UDP_HEADER, udpChecksumValid } from "./udp.ts";
import { VLAN_TAG } from "./vlan.ts";

/** Flags {@linkcode parseFrame} returns. */
export const FrameFlag = {
  /** At least one 802.1Q / 802.1ad tag. */
  VLAN: 1 << 0,
  /** An IPv4 header. */
  IPV4: 1 << 1,
  /** An IPv6 header. */
  IPV6: 1 << 2,
  /** ARP. */
  ARP: 1 << 3,
  /** UDP. */
  UDP: 1 << 4,
  /** TCP. */
  TCP: 1 << 5,
  /** ICMP or ICMPv6. */
  ICMP: 1 << 6,
  /** The IPv4 header checksum verified. */
  IP_CHECKSUM_OK: 1 << 7,
  /** The UDP/TCP/ICMP checksum verified (or UDP over IPv4 carried none). */
  L4_CHECKSUM_OK: 1 << 8,
  /** The lengths in the headers do not fit in the frame. */
  TRUNCATED: 1 << 9,
} as const;

/** Index in the view of the innermost EtherType. */
export const VIEW_ETHER_TYPE = 0;
/** Index of the VLAN ID of the outer tag (-1 when untagged). */
export const VIEW_VLAN = 1;
/** Index of the L3 (IP / ARP) offset. */
export const VIEW_L3 = 2;
/** Index of the L4 offset (-1 when none). */
export const VIEW_L4 = 3;
/** Index of the L4 payload offset (-1 when none). */
export const VIEW_PAYLOAD = 4;
/** Index of the L4 length (header + payload) from the IP header. */
export const VIEW_L4_LENGTH = 5;
/** Index of the IP protocol / next header (-1 when not IP). */
export const VIEW_PROTOCOL = 6;
/** Length a view array needs. */
export const VIEW_SIZE = 8;

/**
 * Parses the frame at `bytes[offset .. offset+length)` into `view` (a reusable
 * `Int32Array(VIEW_SIZE)`, offsets absolute in `bytes`) and returns {@linkcode FrameFlag} bits,
 * checksums verified. IPv6 extension headers are not followed.
 *
 * @example
 * ```ts
 * import { FrameFlag, parseFrame, VIEW_SIZE } from "./frame_view.ts";
 * import { writeUdpFrame } from "./udp_frame.ts";
 * const f = new Uint8Array(64), view = new Int32Array(VIEW_SIZE);
 * writeUdpFrame(f, 0, 64);
 * const flags = parseFrame(f, 0, 64, view);
 * console.assert((flags & FrameFlag.UDP) !== 0 && (flags & FrameFlag.IP_CHECKSUM_OK) !== 0);
 * ```
 */
export function parseFrame(
  bytes: Uint8Array,
  offset: number,
  length: number,
  view: Int32Array,
): number {
  const end = offset + length;
  let flags = 0;
  view[VIEW_VLAN] = -1;
  view[VIEW_L4] = -1;
  view[VIEW_PAYLOAD] = -1;
  view[VIEW_L4_LENGTH] = 0;
  view[VIEW_PROTOCOL] = -1;
  let at = offset + 12;
  if (at + 2 > end) return FrameFlag.TRUNCATED;
  let type = read16(bytes, at);
  while ((type === EtherType.VLAN || type === EtherType.QINQ) && at + 6 <= end) {
    if (view[VIEW_VLAN] < 0) view[VIEW_VLAN] = read16(bytes, at + 2) & 0x0fff;
    flags |= FrameFlag.VLAN;
    at += VLAN_TAG;
    type = read16(bytes, at);
  }
  const l3 = at + 2;
  view[VIEW_ETHER_TYPE] = type;
  view[VIEW_L3] = l3;
  let l4: number, l4Length: number, protocol: number;
  if (type === EtherType.IPV4) {
    flags |= FrameFlag.IPV4;
    if (l3 + 20 > end) return flags | FrameFlag.TRUNCATED;
    const ihl = ipv4HeaderLength(bytes, l3);
    const total = read16(bytes, l3 + 2);
    if (ihl < 20 || l3 + total > end || total < ihl) return flags | FrameFlag.TRUNCATED;
    if (ipv4HeaderValid(bytes, l3)) flags |= FrameFlag.IP_CHECKSUM_OK;
    l4 = l3 + ihl;
    l4Length = total - ihl;
    protocol = bytes[l3 + 9];
  } else if (type === EtherType.IPV6) {
    flags |= FrameFlag.IPV6;
    if (l3 + IPV6_HEADER > end) return flags | FrameFlag.TRUNCATED;
    l4 = l3 + IPV6_HEADER;
    l4Length = read16(bytes, l3 + 4);
    if (l4 + l4Length > end) return flags | FrameFlag.TRUNCATED;
    protocol = bytes[l3 + 6];
  } else {
    if (type === EtherType.ARP) flags |= FrameFlag.ARP;
    return flags;
  }
  view[VIEW_PROTOCOL] = protocol;
  view[VIEW_L4] = l4;
  view[VIEW_L4_LENGTH] = l4Length;
  if (protocol === IpProtocol.UDP) {
    flags |= FrameFlag.UDP;
    if (l4Length < UDP_HEADER || read16(bytes, l4 + 4) > l4Length) {
      return flags | FrameFlag.TRUNCATED;
    }
    view[VIEW_PAYLOAD] = l4 + UDP_HEADER;
    if (udpChecksumValid(bytes, l3, l4)) flags |= FrameFlag.L4_CHECKSUM_OK;
  } else if (protocol === IpProtocol.TCP) {
    flags |= FrameFlag.TCP;
    if (l4Length < 20) return flags | FrameFlag.TRUNCATED;
    view[VIEW_PAYLOAD] = l4 + tcpHeaderLength(bytes, l4);
    if (tcpChecksumValid(bytes, l3, l4, l4Length)) flags |= FrameFlag.L4_CHECKSUM_OK;
  } else if (protocol === IpProtocol.ICMP || protocol === IpProtocol.ICMPV6) {
    flags |= FrameFlag.ICMP;
    if (l4Length < 8) return flags | FrameFlag.TRUNCATED;
    view[VIEW_PAYLOAD] = l4 + 8;
    if (icmpChecksumValid(bytes, l3, l4, l4Length)) flags |= FrameFlag.L4_CHECKSUM_OK;
  }
  return flags;
}
